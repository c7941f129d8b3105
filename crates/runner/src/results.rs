//! What a run leaves behind: one JSON file per finished run, written atomically, and a summary
//! CSV joining them. A sweep killed at any moment loses no finished run (its file is complete or
//! absent) and never repeats one (a run with a file is skipped).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use normlab_model::probe::SiteStats;
use serde::{Deserialize, Serialize};

use crate::analysis::final_score;
use crate::axes::{AxisKey, Setting};
use crate::config::{Experiment, GridPoint, RunConfig};
use crate::error::RunnerError;
use crate::result_set::ResultSet;

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

/// How a model is scored on the evaluation split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EvalMode {
    /// Eval mode: running statistics for batch norm.
    Eval,
    /// Training mode at the training batch size (or `train_mode_batch_size`): batch statistics,
    /// Wu & Johnson's measure of the train-test inconsistency. Only where a norm takes
    /// statistics over the batch (elsewhere it equals eval mode).
    TrainMode,
    /// Eval mode with PreciseBN's population statistics, re-estimated at the last evaluation.
    Precise,
    /// The model with its batch norms folded into the layers before them, at the last
    /// evaluation.
    Folded,
    /// Eval mode on evaluation windows of this many characters (text sets).
    Length(usize),
}

impl EvalMode {
    /// What the mode is called in a table or a legend.
    pub fn describe(self) -> String {
        match self {
            Self::Eval => "eval mode".into(),
            Self::TrainMode => "train mode".into(),
            Self::Precise => "PreciseBN".into(),
            Self::Folded => "folded".into(),
            Self::Length(length) => format!("length {length}"),
        }
    }
}

impl fmt::Display for EvalMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Eval => f.write_str("eval"),
            Self::TrainMode => f.write_str("train_mode"),
            Self::Precise => f.write_str("precise"),
            Self::Folded => f.write_str("folded"),
            Self::Length(length) => write!(f, "length_{length}"),
        }
    }
}

impl FromStr for EvalMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "eval" => Self::Eval,
            "train_mode" => Self::TrainMode,
            "precise" => Self::Precise,
            "folded" => Self::Folded,
            _ => match text.strip_prefix("length_").map(str::parse) {
                Some(Ok(length)) => Self::Length(length),
                _ => return Err(format!("unknown evaluation mode `{text}`")),
            },
        })
    }
}

/// A model's mean cross-entropy and error rate on the evaluation examples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Mean cross-entropy (nats).
    pub loss: f32,
    /// Share of wrong predictions, 0..1.
    pub error: f32,
}

/// One evaluation on the held-out set: a score per evaluation mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "EvalFile", into = "EvalFile")]
pub struct Eval {
    /// Training steps done when it was taken.
    pub step: usize,
    /// Training examples seen when it was taken.
    pub samples: usize,
    /// Every mode the run was scored in; eval mode always.
    pub scores: BTreeMap<EvalMode, Score>,
}

impl Eval {
    /// The score in `mode`, if the run was scored so.
    pub fn score(&self, mode: EvalMode) -> Option<Score> {
        self.scores.get(&mode).copied()
    }
}

/// An evaluation as a run file holds it: the scores by mode name. Files written before
/// 2026-12-04 held each mode in fields of its own, read here too.
#[derive(Serialize, Deserialize)]
struct EvalFile {
    step: usize,
    samples: usize,
    #[serde(default)]
    scores: BTreeMap<String, Score>,
    #[serde(default, skip_serializing)]
    valid_loss: Option<f32>,
    #[serde(default, skip_serializing)]
    valid_error: Option<f32>,
    #[serde(default, skip_serializing)]
    train_mode_loss: Option<f32>,
    #[serde(default, skip_serializing)]
    train_mode_error: Option<f32>,
    #[serde(default, skip_serializing)]
    precise_loss: Option<f32>,
    #[serde(default, skip_serializing)]
    precise_error: Option<f32>,
    #[serde(default, skip_serializing)]
    folded_loss: Option<f32>,
    #[serde(default, skip_serializing)]
    folded_error: Option<f32>,
    #[serde(default, skip_serializing)]
    by_length: Vec<LengthEval>,
}

/// A score on evaluation windows of one length, as files before 2026-12-04 held it.
#[derive(Deserialize, Serialize)]
struct LengthEval {
    length: usize,
    loss: f32,
    error: f32,
}

impl From<EvalFile> for Eval {
    fn from(file: EvalFile) -> Self {
        let mut scores: BTreeMap<EvalMode, Score> = file
            .scores
            .into_iter()
            .filter_map(|(mode, score)| Some((mode.parse().ok()?, score)))
            .collect();
        let legacy = [
            (EvalMode::Eval, file.valid_loss, file.valid_error),
            (
                EvalMode::TrainMode,
                file.train_mode_loss,
                file.train_mode_error,
            ),
            (EvalMode::Precise, file.precise_loss, file.precise_error),
            (EvalMode::Folded, file.folded_loss, file.folded_error),
        ];
        for (mode, loss, error) in legacy {
            if let (Some(loss), Some(error)) = (loss, error) {
                scores.insert(mode, Score { loss, error });
            }
        }
        for length in file.by_length {
            let score = Score {
                loss: length.loss,
                error: length.error,
            };
            scores.insert(EvalMode::Length(length.length), score);
        }
        Self {
            step: file.step,
            samples: file.samples,
            scores,
        }
    }
}

impl From<Eval> for EvalFile {
    fn from(eval: Eval) -> Self {
        Self {
            step: eval.step,
            samples: eval.samples,
            scores: eval
                .scores
                .into_iter()
                .map(|(mode, score)| (mode.to_string(), score))
                .collect(),
            valid_loss: None,
            valid_error: None,
            train_mode_loss: None,
            train_mode_error: None,
            precise_loss: None,
            precise_error: None,
            folded_loss: None,
            folded_error: None,
            by_length: Vec::new(),
        }
    }
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
///
/// Steps before `first_step` are left out: the blank start that every sequence of the batch
/// shares (the empty top rows of every digit), up to the step by which every sequence has left
/// it. Until then some sequences are still in the shared state, a norm's per-step statistics
/// come from a few sequences or none, and its backward multiplies the gradient by up to
/// `gamma / sqrt(epsilon)` per step: the gradient there measures epsilon, not the recurrence, and
/// can overflow. If the gradient is still not finite at a later step, the record starts after
/// it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradientFlow {
    /// Training steps done before it: 0 at initialization.
    pub step: usize,
    /// The time step of `norms[0]`.
    #[serde(default)]
    pub first_step: usize,
    /// `mean_n ||dLoss/dh_t[n]||` for every step `t >= first_step` of the last recurrent layer,
    /// up to the last step.
    pub norms: Vec<f32>,
}

impl GradientFlow {
    /// `(steps back from the last step, ||dLoss/dh_t|| / ||dLoss/dh_last||)` for every step
    /// recorded; nothing when the last step's gradient is zero.
    pub fn relative_to_last(&self) -> Vec<(usize, f64)> {
        let Some(&last) = self.norms.last().filter(|&&last| last > 0.0) else {
            return Vec::new();
        };
        let back = self.norms.len() - 1;
        self.norms
            .iter()
            .enumerate()
            .map(|(i, &norm)| (back - i, f64::from(norm) / f64::from(last)))
            .collect()
    }
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
    /// The run's label on each axis of the experiment, in axis order.
    pub axes: Vec<Setting>,
    /// How it ended.
    pub status: Status,
    /// Why it ended early, when it did.
    pub reason: Option<String>,
    /// The config it ran with.
    pub config: RunConfig,
    /// The learning rate used, after scaling with the batch size.
    pub lr: f64,
    /// The classes of the data (characters, for a language model): chance level is guessing
    /// one of them. Absent from records written before 2026-12-04.
    #[serde(default)]
    pub classes: Option<usize>,
    /// The shape of one image, `[channels, height, width]`, for image sets: what the deepest
    /// norms of a conv network see follows from it. Absent from records written before
    /// 2026-12-04 and for other sets.
    #[serde(default)]
    pub image_shape: Option<[usize; 3]>,
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
    /// The record of `point` before it trains.
    pub fn new(point: &GridPoint) -> Self {
        Self {
            id: point.id.clone(),
            axes: point.axes.clone(),
            status: Status::Finished,
            reason: None,
            config: point.run.clone(),
            lr: point.run.lr(),
            classes: None,
            image_shape: None,
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

    /// The run's label on axis `key`, if the experiment has that axis.
    pub fn label(&self, key: &AxisKey) -> Option<&str> {
        self.axes
            .iter()
            .find(|setting| setting.key == *key)
            .map(|setting| setting.label.as_str())
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

    /// `summary.csv`: one row per run with its axes and final metrics. `valid_error` is the
    /// run's error as the reports give it (the median over the last 10% of training, a share
    /// 0..1), `last_valid_error` its last evaluation's; `lr_scaled` the learning rate after
    /// scaling with the batch size.
    pub fn write_summary(&self, set: &ResultSet) -> Result<(), RunnerError> {
        let path = self.root.join("summary.csv");
        let mut writer = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<String> = vec!["id".into()];
        header.extend(set.axes.iter().map(|key| key.to_string()));
        header.extend(
            [
                "status",
                "valid_error",
                "train_mode_valid_error",
                "last_valid_error",
                "last_valid_loss",
                "lr_scaled",
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
        let share = |percent: Option<f64>| percent.map(|p| (p / 100.0).to_string());
        for record in &set.records {
            let last = record
                .final_eval()
                .and_then(|eval| eval.score(EvalMode::Eval));
            let mut row = vec![record.id.clone()];
            row.extend(record.axes.iter().map(|setting| setting.label.clone()));
            row.extend([
                serde_json::to_value(record.status)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                share(final_score(record, EvalMode::Eval)).unwrap_or_default(),
                share(final_score(record, EvalMode::TrainMode)).unwrap_or_default(),
                last.map(|s| s.error.to_string()).unwrap_or_default(),
                last.map(|s| s.loss.to_string()).unwrap_or_default(),
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
