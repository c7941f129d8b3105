//! What a run leaves behind: one JSON file per finished run, written atomically, and a summary
//! CSV joining them. A sweep killed at any moment loses no finished run (its file is complete or
//! absent) and never repeats one (a run with a file is skipped).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use normlab_model::probe::SiteStats;
use serde::{Deserialize, Serialize};

use crate::config::{Experiment, GridPoint, RunConfig};
use crate::error::RunnerError;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Trained for its whole budget.
    Finished,
    /// The loss became non-finite or exploded; the run was stopped.
    Diverged,
    /// The configuration cannot train (e.g. batch norm on one value per channel); `reason` says
    /// why, in the layer's own words.
    Impossible,
}

/// Training loss over a window of consecutive steps (one step in runs of at most
/// [`LOSS_POINTS`] steps).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepLoss {
    /// 1-based number of the window's last step.
    pub step: usize,
    /// Training examples seen after that step.
    pub samples: usize,
    /// The mean over the window's steps of each step's mean cross-entropy on its batch.
    pub loss: f32,
}

/// The most loss points a run records. A run of 50000 steps would otherwise write a few
/// megabytes of losses that no plot can show apart; 500 windows still resolve the curve finer
/// than the loss chart's smoothing does.
pub const LOSS_POINTS: usize = 500;

/// Averages the training loss over windows of equal length, as many steps each as a run of
/// `total_steps` needs to record at most [`LOSS_POINTS`] points (the last window may be shorter).
#[derive(Debug, Clone)]
pub struct LossWindows {
    steps_per_window: usize,
    sum: f64,
    count: usize,
    last_step: usize,
    last_samples: usize,
}

impl LossWindows {
    /// Windows for a run of `total_steps` steps.
    pub fn for_run(total_steps: usize) -> Self {
        Self {
            steps_per_window: total_steps.div_ceil(LOSS_POINTS).max(1),
            sum: 0.0,
            count: 0,
            last_step: 0,
            last_samples: 0,
        }
    }

    /// Adds the loss of `step` (after which `samples` examples were seen); returns the window's
    /// point when the step closes it.
    pub fn push(&mut self, step: usize, samples: usize, loss: f32) -> Option<StepLoss> {
        self.sum += f64::from(loss);
        self.count += 1;
        self.last_step = step;
        self.last_samples = samples;
        if self.count == self.steps_per_window {
            self.close()
        } else {
            None
        }
    }

    /// The point of the window in progress, if it holds any step: a run that ends early or
    /// whose steps do not divide into whole windows records its last steps too.
    pub fn close(&mut self) -> Option<StepLoss> {
        let count = std::mem::take(&mut self.count);
        let sum = std::mem::take(&mut self.sum);
        (count > 0).then(|| StepLoss {
            step: self.last_step,
            samples: self.last_samples,
            loss: (sum / count as f64) as f32,
        })
    }
}

/// Loss and error on evaluation windows of one length (text sets).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LengthEval {
    /// Characters per evaluation window.
    pub length: usize,
    /// Mean cross-entropy.
    pub loss: f32,
    /// Share of wrong predictions, 0..1.
    pub error: f32,
}

/// One evaluation on the held-out set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    /// Training steps done when it was taken.
    pub step: usize,
    /// Training examples seen when it was taken.
    pub samples: usize,
    /// Eval mode: running statistics for batch norm.
    pub valid_loss: f32,
    /// Share of wrong predictions, 0..1.
    pub valid_error: f32,
    /// Training mode at the training batch size: batch statistics. `None` where the model has no
    /// batch norm (it would equal eval mode) or training-mode eval was off.
    pub train_mode_loss: Option<f32>,
    /// Share of wrong predictions in training mode, 0..1.
    pub train_mode_error: Option<f32>,
    /// Text sets: eval mode on windows of other lengths.
    pub by_length: Vec<LengthEval>,
    /// At the last evaluation with `precise_batches`: eval mode with PreciseBN's re-estimated
    /// statistics.
    #[serde(default)]
    pub precise_loss: Option<f32>,
    /// Share of wrong predictions with PreciseBN's statistics, 0..1.
    #[serde(default)]
    pub precise_error: Option<f32>,
    /// At the last evaluation with `folded_eval`: the model with its batch norms folded.
    #[serde(default)]
    pub folded_loss: Option<f32>,
    /// Share of wrong predictions of the folded model, 0..1.
    #[serde(default)]
    pub folded_error: Option<f32>,
}

/// Activation statistics at every norm site at one training step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Training steps done before it.
    pub step: usize,
    /// One entry per norm site the forward pass went through.
    pub sites: Vec<SiteStats>,
}

/// The loss's gradient with respect to every hidden state of a recurrence, on one batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradientFlow {
    /// Training steps done before it: 0 at initialization.
    pub step: usize,
    /// `mean_n ||dLoss/dh_t[n]||` for every step `t` of the last recurrent layer.
    pub norms: Vec<f32>,
}

/// The time a training step spent in its norm layers: medians over the steps, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NormSeconds {
    /// In the layers' forward calls.
    pub forward: f64,
    /// In their backward steps.
    pub backward: f64,
    /// Of forward plus backward in each step (not the sum of the two medians).
    pub total: f64,
}

/// Everything one run recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The grid point's id, also the run file's name.
    pub id: String,
    /// `(axis name, value label)` for each axis of the experiment, in axis order.
    pub axes: Vec<(String, String)>,
    /// How it ended.
    pub status: Status,
    /// Why it ended early, when it did.
    pub reason: Option<String>,
    /// The config it ran with.
    pub config: RunConfig,
    /// The learning rate used, after scaling with the batch size.
    pub lr: f64,
    /// The training loss, averaged over windows of steps (see [`LossWindows`]).
    pub losses: Vec<StepLoss>,
    /// The evaluations, in order; the last is the run's result.
    pub evals: Vec<Eval>,
    /// Activation statistics, when probed.
    pub probes: Vec<Probe>,
    /// Gradient flow through the recurrence at initialization and after training, when asked.
    #[serde(default)]
    pub gradient_flow: Vec<GradientFlow>,
    /// Training steps done.
    pub steps: usize,
    /// Training examples seen.
    pub samples: usize,
    /// Median wall time of a training step (forward, backward, update), seconds.
    pub step_seconds: f64,
    /// With `time_norms`: median time of a step's norm layers, forward and backward, seconds.
    #[serde(default)]
    pub norm_seconds: Option<NormSeconds>,
    /// Wall time of the whole run, evaluations included, seconds.
    pub wall_seconds: f64,
}

impl RunRecord {
    /// The record of `point` before it trains; the sweep stamps its axis labels.
    pub fn new(point: &GridPoint) -> Self {
        Self {
            id: point.id.clone(),
            axes: Vec::new(),
            status: Status::Finished,
            reason: None,
            config: point.run.clone(),
            lr: point.run.lr(),
            losses: Vec::new(),
            evals: Vec::new(),
            probes: Vec::new(),
            gradient_flow: Vec::new(),
            steps: 0,
            samples: 0,
            step_seconds: 0.0,
            norm_seconds: None,
            wall_seconds: 0.0,
        }
    }

    /// The record ended early with `status` (diverged, impossible) for `reason`.
    pub fn ended(mut self, status: Status, reason: String, started: Instant) -> Self {
        self.status = status;
        self.reason = Some(reason);
        self.wall_seconds = started.elapsed().as_secs_f64();
        self
    }

    /// The value label of axis `name`, if the experiment has that axis.
    pub fn axis(&self, name: &str) -> Option<&str> {
        self.axes
            .iter()
            .find(|(axis, _)| axis == name)
            .map(|(_, label)| label.as_str())
    }

    /// The last evaluation: the run's result.
    pub fn final_eval(&self) -> Option<&Eval> {
        self.evals.last()
    }
}

/// The files of one experiment's results: `results/<name>/`.
#[derive(Debug, Clone)]
pub struct ResultsDir {
    /// `results/<name>/`.
    pub root: PathBuf,
}

impl ResultsDir {
    /// The results folder at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder of the run files.
    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// The file of run `id`.
    pub fn run_file(&self, id: &str) -> PathBuf {
        self.runs().join(format!("{id}.json"))
    }

    /// The copy of the experiment file the results came from.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("experiment.toml")
    }

    /// True when run `id` finished earlier (in any terminal status).
    pub fn has_run(&self, id: &str) -> bool {
        self.run_file(id).is_file()
    }

    /// Writes `record` so that the file is either complete or absent: a temporary file, then a
    /// rename, which replaces atomically on one file system.
    pub fn write_run(&self, record: &RunRecord) -> std::io::Result<()> {
        let json = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        write_atomically(&self.run_file(&record.id), &json)
    }

    /// The records of `experiment`'s grid points that have finished, in grid order.
    pub fn read_runs(&self, experiment: &Experiment) -> Result<Vec<RunRecord>, RunnerError> {
        let mut records = Vec::new();
        for point in &experiment.points {
            let path = self.run_file(&point.id);
            if !path.is_file() {
                continue;
            }
            let bytes = fs::read(&path).map_err(RunnerError::io(&path))?;
            let record = serde_json::from_slice(&bytes)
                .map_err(|source| RunnerError::RunRecord { path, source })?;
            records.push(record);
        }
        Ok(records)
    }

    /// `summary.csv`: one row per run with its axes and final metrics.
    pub fn write_summary(
        &self,
        experiment: &Experiment,
        records: &[RunRecord],
    ) -> Result<(), RunnerError> {
        let path = self.root.join("summary.csv");
        let mut writer = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<String> = vec!["id".into()];
        header.extend(experiment.axes.iter().map(|a| a.name.clone()));
        header.extend(
            [
                "status",
                "valid_error",
                "valid_loss",
                "train_mode_valid_error",
                "lr",
                "steps",
                "samples",
                "step_ms",
                "wall_s",
                "reason",
            ]
            .map(String::from),
        );
        let csv_error = |source| RunnerError::Csv {
            path: path.clone(),
            source,
        };
        writer.write_record(&header).map_err(csv_error)?;
        let number = |v: Option<f32>| v.map(|v| v.to_string()).unwrap_or_default();
        for record in records {
            let last = record.final_eval();
            let mut row = vec![record.id.clone()];
            row.extend(record.axes.iter().map(|(_, label)| label.clone()));
            row.extend([
                serde_json::to_value(record.status)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                number(last.map(|e| e.valid_error)),
                number(last.map(|e| e.valid_loss)),
                number(last.and_then(|e| e.train_mode_error)),
                record.lr.to_string(),
                record.steps.to_string(),
                record.samples.to_string(),
                format!("{:.3}", record.step_seconds * 1e3),
                format!("{:.2}", record.wall_seconds),
                record.reason.clone().unwrap_or_default(),
            ]);
            writer.write_record(&row).map_err(csv_error)?;
        }
        let bytes = writer
            .into_inner()
            .map_err(|e| RunnerError::io(&path)(e.into_error()))?;
        write_atomically(&path, &bytes).map_err(RunnerError::io(&path))
    }
}

/// A PNG drawn into a results folder, with what the report says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotFile {
    /// The file name inside the results folder, e.g. `loss_curves.png`.
    pub file: String,
    /// The plot's title.
    pub title: String,
    /// What the plot shows and how its numbers were computed.
    pub caption: String,
}

/// Writes `bytes` to `path` through a temporary sibling and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&temporary, bytes)?;
    fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds steps `1..=steps` with loss `loss(step)` and batches of 4, closes at the end, and
    /// gives each point as `(step, samples, loss)`.
    fn windows_of(steps: usize, loss: impl Fn(usize) -> f32) -> Vec<(usize, usize, f32)> {
        let mut windows = LossWindows::for_run(steps);
        let mut points: Vec<StepLoss> = (1..=steps)
            .filter_map(|step| windows.push(step, 4 * step, loss(step)))
            .collect();
        points.extend(windows.close());
        points.iter().map(|p| (p.step, p.samples, p.loss)).collect()
    }

    #[test]
    fn short_runs_record_every_step() {
        let points = windows_of(LOSS_POINTS, |step| step as f32);
        let every_step: Vec<_> = (1..=LOSS_POINTS).map(|s| (s, 4 * s, s as f32)).collect();
        assert_eq!(points, every_step);
    }

    #[test]
    fn long_runs_record_window_means_ending_at_their_last_step() {
        // 1001 steps in windows of 3: 333 whole windows and one of the last two steps.
        let points = windows_of(1001, |step| step as f32);
        assert_eq!(points.len(), 334);
        assert_eq!(points[..2], [(3, 12, 2.0), (6, 24, 5.0)]);
        assert_eq!(points[333], (1001, 4004, 1000.5));
    }

    #[test]
    fn a_run_that_ends_early_keeps_its_partial_window() {
        let mut windows = LossWindows::for_run(50_000);
        assert_eq!(windows.push(1, 2, 1.0), None);
        assert_eq!(windows.push(2, 4, 3.0), None);
        let partial = windows.close().map(|p| (p.step, p.samples, p.loss));
        assert_eq!(partial, Some((2, 4, 2.0)));
        assert_eq!(windows.close(), None, "a closed window is recorded once");
    }
}
