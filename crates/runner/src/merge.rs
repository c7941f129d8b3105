//! `normlab merge`: the results folders of one experiment's shards made into one, with the
//! summary, plots and report of the whole grid.

use std::path::{Path, PathBuf};

use crate::error::RunnerError;
use crate::machine;
use crate::results::{ResultsDir, write_atomically};
use crate::sweep::{experiment_of, write_outputs};

/// Copies every run record of `folders` (all holding the same experiment) into `out` and draws
/// the summary, plots and report there. A run in several folders is the same deterministic run;
/// the first copy is kept. Returns the number of runs in `out`.
pub fn merge(folders: &[PathBuf], out: &Path) -> Result<usize, RunnerError> {
    let first = ResultsDir::new(&folders[0]);
    let experiment = experiment_of(&first)?;
    let text = |dir: &ResultsDir| {
        std::fs::read_to_string(dir.config_file()).map_err(RunnerError::io(dir.config_file()))
    };
    let config = text(&first)?;
    let merged = ResultsDir::new(out);
    if let Ok(existing) = std::fs::read_to_string(merged.config_file())
        && existing != config
    {
        return Err(RunnerError::OtherExperiment {
            dir: out.to_path_buf(),
            experiment: first.config_file(),
        });
    }
    let mut machines = Vec::new();
    for folder in folders {
        let dir = ResultsDir::new(folder);
        if text(&dir)? != config {
            return Err(RunnerError::OtherExperiment {
                dir: folder.clone(),
                experiment: first.config_file(),
            });
        }
        machines.extend(machine::recorded(&dir));
        for point in &experiment.points {
            let (from, to) = (dir.run_file(&point.id), merged.run_file(&point.id));
            if from.is_file() && !to.is_file() {
                let bytes = std::fs::read(&from).map_err(RunnerError::io(&from))?;
                write_atomically(&to, &bytes).map_err(RunnerError::io(&to))?;
            }
        }
    }
    write_atomically(&merged.config_file(), config.as_bytes())
        .map_err(RunnerError::io(merged.config_file()))?;
    for line in machines {
        machine::record(&merged, &line)?;
    }
    let command = std::fs::read_to_string(first.root.join("command.txt")).unwrap_or_default();
    let command = format!("{}\n# merged from the shards' folders", command.trim());
    let path = merged.root.join("command.txt");
    write_atomically(&path, format!("{command}\n").as_bytes()).map_err(RunnerError::io(path))?;
    write_outputs(&experiment, &merged, &command, None)?;
    Ok(merged.read_runs(&experiment)?.len())
}
