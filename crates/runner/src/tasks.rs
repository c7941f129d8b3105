//! The data of an experiment: each distinct `[data]` of its grid loaded once, from the data
//! root found near the experiment file, and the input scalers fitted on them saved beside the
//! results.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use normlab_data::DataRoot;

use crate::config::{DataConfig, Experiment, GridPoint};
use crate::error::RunnerError;
use crate::results::{ResultsDir, write_atomically};
use crate::task::Task;

/// The loaded data of every grid point of an experiment.
pub struct Tasks {
    by_config: HashMap<String, Task>,
}

impl Tasks {
    /// Loads each distinct data config of `experiment` once, from the data root
    /// [`DataRoot::locate`] finds from the experiment file's folder or the working directory,
    /// and checks that each point's evaluation lengths fit its data.
    pub fn load(experiment: &Experiment) -> Result<Self, RunnerError> {
        let experiment_dir = std::path::absolute(&experiment.path)
            .ok()
            .and_then(|path| path.parent().map(Path::to_path_buf));
        let working_dir = std::env::current_dir().ok();
        let base = experiment_dir.clone().unwrap_or_default();
        let starts = [experiment_dir, working_dir];
        let root = DataRoot::locate(starts.iter().flatten().map(PathBuf::as_path));
        let data_error = |source| RunnerError::Data {
            experiment: experiment.path.clone(),
            source,
        };
        let mut by_config = HashMap::new();
        for point in &experiment.points {
            let task = match by_config.entry(key(&point.run.data)) {
                std::collections::hash_map::Entry::Occupied(slot) => slot.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(Task::load(&point.run.data, &base, &root).map_err(data_error)?)
                }
            };
            task.check_eval_lengths(&point.run.train.eval_lengths)
                .map_err(data_error)?;
        }
        Ok(Self { by_config })
    }

    /// The data of `point`.
    pub fn of(&self, point: &GridPoint) -> &Task {
        &self.by_config[&key(&point.run.data)]
    }

    /// Writes each fitted input scaler beside the results (`scaler.json`, or
    /// `scaler-<k>.json` when the grid varies the data), so the numbers a model was trained
    /// with can be applied again.
    pub fn save_scalers(&self, dir: &ResultsDir) -> Result<(), RunnerError> {
        let mut keys: Vec<&String> = self
            .by_config
            .keys()
            .filter(|k| self.by_config[*k].scaler.is_some())
            .collect();
        keys.sort();
        for (k, key) in keys.iter().enumerate() {
            let name = match keys.len() {
                1 => "scaler.json".to_string(),
                _ => format!("scaler-{k}.json"),
            };
            let data: serde_json::Value = serde_json::from_str(key).expect("keys are JSON");
            let json = serde_json::json!({ "data": data, "scaler": self.by_config[*key].scaler });
            let path = dir.root.join(name);
            let bytes = serde_json::to_vec_pretty(&json).expect("scalers serialize");
            write_atomically(&path, &bytes).map_err(RunnerError::io(path))?;
        }
        Ok(())
    }
}

/// The key under which a data config's loaded task is kept.
fn key(config: &DataConfig) -> String {
    serde_json::to_string(config).expect("data configs serialize")
}
