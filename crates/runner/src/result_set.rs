//! What the plots, the report, `compare`, `merge` and `verify` read: an experiment's planned
//! grid and the records of its runs, with typed axes. One results folder makes one
//! ([`ResultSet::read`]); several folders make one comparison ([`ResultSet::combine`]), whose
//! runs carry the folder they come from as an [`AxisKey::Experiment`] axis.

use std::path::Path;

use crate::axes::{AxisKey, AxisValue, Setting};
use crate::config::{Experiment, RunConfig};
use crate::error::RunnerError;
use crate::results::{ResultsDir, RunRecord};
use crate::sweep::experiment_of;

/// A grid point as the results know it, whether or not its run finished.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    /// The run's id.
    pub id: String,
    /// Its label on each axis, in axis order.
    pub axes: Vec<Setting>,
    /// Its config.
    pub config: RunConfig,
}

/// An experiment's grid and the records of its runs; see the module doc.
#[derive(Debug, Clone)]
pub struct ResultSet {
    /// The experiment's name (the results folder's).
    pub name: String,
    /// The experiment file's description: its design and hypothesis; empty if none.
    pub description: String,
    /// The experiment file, shown in its report; `None` for a comparison.
    pub config_text: Option<String>,
    /// The grid's axes, in axis order.
    pub axes: Vec<AxisKey>,
    /// Every grid point in grid order: the order of series, panels and colours.
    pub grid: Vec<PlannedRun>,
    /// The records of the runs that have one, in grid order.
    pub records: Vec<RunRecord>,
}

impl ResultSet {
    /// `experiment`'s grid with `records`.
    pub fn new(experiment: &Experiment, records: Vec<RunRecord>) -> Self {
        Self {
            name: experiment.name.clone(),
            description: experiment.description.trim().to_string(),
            config_text: Some(experiment.text.clone()),
            axes: experiment.axis_keys(),
            grid: experiment
                .points
                .iter()
                .map(|point| PlannedRun {
                    id: point.id.clone(),
                    axes: point.axes.clone(),
                    config: point.run.clone(),
                })
                .collect(),
            records,
        }
    }

    /// The grid and records of the results folder `dir`.
    pub fn read(dir: &ResultsDir) -> Result<Self, RunnerError> {
        let experiment = experiment_of(dir)?;
        let records = dir.read_runs(&experiment)?;
        Ok(Self::new(&experiment, records))
    }

    /// The sets as one comparison named `name`: an [`AxisKey::Experiment`] axis first, then
    /// every axis of any set (`-` for a run whose set lacks it); ids become `set/id`.
    pub fn combine(name: &str, sets: Vec<ResultSet>) -> Self {
        let mut axes = vec![AxisKey::Experiment];
        for key in sets.iter().flat_map(|set| &set.axes) {
            if !axes.contains(key) {
                axes.push(key.clone());
            }
        }
        let relabel = |set: &str, own: &[Setting]| -> Vec<Setting> {
            axes.iter()
                .map(|key| Setting {
                    key: key.clone(),
                    label: match key {
                        AxisKey::Experiment => set.to_string(),
                        _ => own
                            .iter()
                            .find(|s| s.key == *key)
                            .map_or("-".to_string(), |s| s.label.clone()),
                    },
                })
                .collect()
        };
        let (mut grid, mut records) = (Vec::new(), Vec::new());
        for set in sets {
            for mut planned in set.grid {
                planned.axes = relabel(&set.name, &planned.axes);
                planned.id = format!("{}/{}", set.name, planned.id);
                grid.push(planned);
            }
            for mut record in set.records {
                record.axes = relabel(&set.name, &record.axes);
                record.id = format!("{}/{}", set.name, record.id);
                records.push(record);
            }
        }
        Self {
            name: name.to_string(),
            description: String::new(),
            config_text: None,
            axes,
            grid,
            records,
        }
    }

    /// Keeps the runs (planned and recorded) whose label on each axis of `only` is the one
    /// given.
    pub fn retain(&mut self, only: &[(AxisKey, String)]) {
        let keep = |axes: &[Setting]| {
            only.iter()
                .all(|(key, label)| axes.iter().any(|s| s.key == *key && s.label == *label))
        };
        self.grid.retain(|planned| keep(&planned.axes));
        self.records.retain(|record| keep(&record.axes));
    }

    /// True when the set has axis `key`.
    pub fn has_axis(&self, key: &AxisKey) -> bool {
        self.axes.contains(key)
    }

    /// The labels axis `key` takes over the grid, in grid order; empty without that axis.
    pub fn labels(&self, key: &AxisKey) -> Vec<String> {
        distinct(
            self.grid
                .iter()
                .filter_map(|planned| label_of(&planned.axes, key)),
        )
    }

    /// The labels of axis `key` in increasing order of their values where every value is a
    /// number, else in grid order.
    pub fn sorted_labels(&self, key: &AxisKey) -> Vec<String> {
        let labels = self.labels(key);
        let value = |label: &String| {
            let planned = self
                .grid
                .iter()
                .find(|p| label_of(&p.axes, key) == Some(label.clone()))?;
            key.value(&planned.config)?.as_number()
        };
        let values: Option<Vec<f64>> = labels.iter().map(value).collect();
        match values {
            Some(values) => {
                let mut pairs: Vec<(f64, String)> = values.into_iter().zip(labels).collect();
                pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
                pairs.into_iter().map(|(_, label)| label).collect()
            }
            None => labels,
        }
    }

    /// True when axis `key` takes more than one value.
    pub fn varies(&self, key: &AxisKey) -> bool {
        self.labels(key).len() > 1
    }

    /// The axes with more than one value, except `exclude` and the experiment a run comes
    /// from, in axis order: what splits runs into panels (plots) or groups (report) beside the
    /// axis being looked at.
    pub fn other_axes(&self, exclude: &[AxisKey]) -> Vec<AxisKey> {
        self.axes
            .iter()
            .filter(|key| {
                !exclude.contains(key) && **key != AxisKey::Experiment && self.varies(key)
            })
            .cloned()
            .collect()
    }

    /// The model and the data every run of the grid shares, in a few words for a plot's
    /// title (`MLP 64-64 on digits`); a part the grid varies is left out.
    pub fn setup(&self) -> String {
        let one = |parts: Vec<String>| match parts.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        let model = one(distinct(
            self.grid.iter().map(|p| p.config.model.describe()),
        ));
        let data = one(distinct(
            self.grid.iter().map(|p| p.config.data.source.describe()),
        ));
        match (model, data) {
            (Some(model), Some(data)) => format!("{model} on {data}"),
            (Some(model), None) => model,
            (None, Some(data)) => format!("on {data}"),
            (None, None) => String::new(),
        }
    }

    /// The series labels of the grid in grid order (see [`series_label`]), whether or not
    /// their runs finished, so that series order and colours never depend on progress; with
    /// the kind of each one's norm.
    pub fn series(&self) -> Vec<(String, &'static str)> {
        distinct(
            self.grid
                .iter()
                .map(|p| (series_of(&p.axes, &p.config), p.config.model.norm().kind())),
        )
    }
}

/// A run's label on axis `key`, among `axes`.
fn label_of(axes: &[Setting], key: &AxisKey) -> Option<String> {
    axes.iter().find(|s| s.key == *key).map(|s| s.label.clone())
}

/// The norm label of a run with `axes` and `config`: its `norm` axis label, or the kind of its
/// one norm.
fn norm_of(axes: &[Setting], config: &RunConfig) -> String {
    label_of(axes, &AxisKey::Norm).unwrap_or_else(|| config.model.norm().kind().to_string())
}

/// What names a run's series in plots and tables: its norm label, after the experiment it
/// comes from in a comparison (`small_batch: batch`).
fn series_of(axes: &[Setting], config: &RunConfig) -> String {
    let norm = norm_of(axes, config);
    match label_of(axes, &AxisKey::Experiment) {
        Some(set) => format!("{set}: {norm}"),
        None => norm,
    }
}

/// The norm label of `record` (see [`ResultSet::series`] for the series label).
pub fn norm_label(record: &RunRecord) -> String {
    norm_of(&record.axes, &record.config)
}

/// The series label of `record`: its norm label, after its experiment in a comparison.
pub fn series_label(record: &RunRecord) -> String {
    series_of(&record.axes, &record.config)
}

/// The typed value of `record` on axis `key`.
pub fn value(record: &RunRecord, key: &AxisKey) -> Option<AxisValue> {
    key.value(&record.config)
}

/// The distinct items in first-seen order.
pub fn distinct<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// The results folder at `path` as a set, for `compare`.
pub fn read_folder(path: &Path) -> Result<ResultSet, RunnerError> {
    ResultSet::read(&ResultsDir::new(path))
}
