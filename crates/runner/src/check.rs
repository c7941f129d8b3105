//! `normlab check`: everything a sweep does before it trains, and a time estimate, without
//! training: the grid, the points that cannot train and why, and how long the steps will take.

use std::collections::HashMap;
use std::fmt;

use burn::prelude::*;

use crate::analysis::fmt_duration;
use crate::axes::AxisKey;
use crate::config::{Budget, Experiment, GridPoint};
use crate::error::RunnerError;
use crate::model_init::dry_run;
use crate::result_set::distinct;
use crate::task::Task;
use crate::tasks::Tasks;
use crate::train::{TrainingThreads, budget_in_steps};

/// Steps timed per setting for the estimate (the first ones, warm-up included).
const TIMED_STEPS: usize = 5;

/// What `normlab check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// `experiments/x.toml`
    pub experiment: String,
    /// `(axis name, number of values)` in axis order.
    pub axes: Vec<(String, usize)>,
    /// Grid points.
    pub runs: usize,
    /// `(run id, the layer's reason)` for every point that cannot train.
    pub impossible: Vec<(String, String)>,
    /// Training steps of every run that can train, timed on a few steps per setting, seconds.
    pub training_seconds: f64,
}

/// Loads the data `experiment` needs, dry-runs every grid point and times a few training steps
/// of each setting (the first seed of every combination of the other axes) on `device`.
pub fn check(experiment: &Experiment, device: &Device) -> Result<CheckReport, RunnerError> {
    let tasks = Tasks::load(experiment)?;
    let threads = TrainingThreads::for_job(experiment, 1)?;
    let mut impossible = Vec::new();
    let mut step_seconds: HashMap<Vec<&str>, f64> = HashMap::new();
    let mut training_seconds = 0.0;
    for point in &experiment.points {
        let task = tasks.of(point);
        if let Err(reason) = dry_run(point, task, device) {
            impossible.push((point.id.clone(), reason.to_string()));
            continue;
        }
        let setting: Vec<&str> = point
            .axes
            .iter()
            .filter(|s| s.key != AxisKey::Seed)
            .map(|s| s.label.as_str())
            .collect();
        let seconds = *step_seconds
            .entry(setting)
            .or_insert_with(|| time_steps(&threads, point, task, device));
        training_seconds += seconds * budget_in_steps(&point.run.train, task.train.len()) as f64;
    }
    Ok(CheckReport {
        experiment: experiment.path.display().to_string(),
        axes: experiment
            .axes
            .iter()
            .enumerate()
            .map(|(i, axis)| {
                let values = experiment.points.iter().map(|p| &p.axes[i].label);
                (axis.key.to_string(), distinct(values).len())
            })
            .collect(),
        runs: experiment.points.len(),
        impossible,
        training_seconds,
    })
}

/// The median time of a training step of `point`, from a run of [`TIMED_STEPS`] steps with one
/// evaluation and nothing else recorded.
fn time_steps(threads: &TrainingThreads, point: &GridPoint, task: &Task, device: &Device) -> f64 {
    let mut short = point.clone();
    let train_config = &mut short.run.train;
    train_config.budget = Budget::Samples(TIMED_STEPS * train_config.batch_size);
    train_config.evals = 1;
    train_config.train_mode_eval = false;
    train_config.precise_batches = None;
    train_config.folded_eval = false;
    train_config.eval_lengths.clear();
    train_config.probe = None;
    train_config.gradient_flow = false;
    threads.train(&short, task, device, |_, _| {}).step_seconds
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let axes: Vec<String> = self
            .axes
            .iter()
            .map(|(name, values)| format!("{name} ({values})"))
            .collect();
        let grid = match axes.is_empty() {
            true => "a single run".to_string(),
            false => axes.join(" x "),
        };
        writeln!(f, "{}: {} runs: {grid}", self.experiment, self.runs)?;
        if self.impossible.is_empty() {
            writeln!(f, "every run can train")?;
        } else {
            writeln!(
                f,
                "{} runs cannot train (recorded as impossible):",
                self.impossible.len()
            )?;
            for (id, reason) in &self.impossible {
                writeln!(f, "  {id}: {reason}")?;
            }
        }
        write!(
            f,
            "estimated time: {} of training steps on one job (timed on {TIMED_STEPS} steps per \
             setting; evaluations come on top, parallel jobs take less on more cores)",
            fmt_duration(self.training_seconds)
        )
    }
}
