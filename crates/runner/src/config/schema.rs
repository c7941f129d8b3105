//! What an experiment file holds once its grid is expanded: the schema of one run, with the
//! defaults of every field and the checks serde cannot make.

use normlab_data::ScalerConfig;
use normlab_model::ModelConfig;
use normlab_model::subnormals::Subnormals;
use normlab_norm::Kernels;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::LrSchedule;
use super::budget::Budget;

/// Where the data comes from and how it is prepared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "DataConfigFile", into = "DataConfigFile")]
pub struct DataConfig {
    /// A named set, or your own files.
    pub source: DataSource,
    /// Input scaling, fitted on the training split only. Default none.
    #[serde(default)]
    pub scaling: ScalerConfig,
    /// Use only this many training examples (a fixed subset, the same for every run).
    pub train_size: Option<usize>,
    /// Use only this many evaluation examples.
    pub valid_size: Option<usize>,
    /// Share of the training data held out for evaluation, for sets without an official test
    /// split. Default 0.2.
    #[serde(default = "default_valid_fraction")]
    pub valid_fraction: f64,
    /// Characters per training window (text sets). Default 64.
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Image sets: present each image as a sequence, for recurrent networks. Default none:
    /// whole images.
    pub image_steps: Option<ImageSteps>,
}

/// What one step of an image presented as a sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSteps {
    /// A row (its pixels in every channel): 28 steps of 28 values for MNIST.
    Rows,
    /// A pixel in row-major order (its value in every channel): 784 steps of 1 value for
    /// MNIST, the pixel-by-pixel sequential MNIST of Cooijmans et al. (2017).
    Pixels,
}

fn default_valid_fraction() -> f64 {
    0.2
}

fn default_seq_len() -> usize {
    64
}

/// Where the examples come from: in a file, `set = "mnist"`, or `set = "files"` with
/// `files = { format = ..., ... }`.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// A set this project knows by name.
    Named(DataSet),
    /// Your own files. Relative paths start from the experiment file's folder (or, where
    /// nothing is there, the working directory).
    Files(DataFiles),
}

impl DataSource {
    /// The set's name as a config writes it, or `your files`.
    pub fn describe(&self) -> String {
        match self {
            Self::Named(set) => serde_json::to_value(set)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            Self::Files(_) => "your files".into(),
        }
    }
}

/// `[data]` as a file writes it: the set's name, `files` beside it for your own.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataConfigFile {
    set: SetName,
    files: Option<DataFiles>,
    #[serde(default)]
    scaling: ScalerConfig,
    train_size: Option<usize>,
    valid_size: Option<usize>,
    #[serde(default = "default_valid_fraction")]
    valid_fraction: f64,
    #[serde(default = "default_seq_len")]
    seq_len: usize,
    image_steps: Option<ImageSteps>,
    /// Records written before `image_steps`: `true` is `image_steps = "rows"`.
    #[serde(default, skip_serializing)]
    rows_as_steps: bool,
}

/// A `set` name: one of the named sets, or `files`.
#[derive(Clone, Copy)]
enum SetName {
    Named(DataSet),
    Files,
}

/// Every name `set` takes.
const SET_NAMES: [&str; 7] = [
    "digits",
    "mnist",
    "fashion_mnist",
    "japanese_vowels",
    "shakespeare",
    "shakespeare_full",
    "files",
];

impl Serialize for SetName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Named(set) => set.serialize(serializer),
            Self::Files => serializer.serialize_str("files"),
        }
    }
}

impl<'de> Deserialize<'de> for SetName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IntoDeserializer};
        let name = String::deserialize(deserializer)?;
        if name == "files" {
            return Ok(Self::Files);
        }
        let named: Result<DataSet, serde::de::value::Error> =
            DataSet::deserialize(name.as_str().into_deserializer());
        named
            .map(Self::Named)
            .map_err(|_| D::Error::unknown_variant(&name, &SET_NAMES))
    }
}

impl TryFrom<DataConfigFile> for DataConfig {
    type Error = String;

    fn try_from(file: DataConfigFile) -> Result<Self, String> {
        let source = match (file.set, file.files) {
            (SetName::Named(set), None) => DataSource::Named(set),
            (SetName::Files, Some(files)) => DataSource::Files(files),
            (SetName::Files, None) => {
                return Err(
                    "`set = \"files\"` needs `files = { format = \"idx\" | \"csv\" | \
                            \"ts\" | \"text\", ... }`"
                        .into(),
                );
            }
            (SetName::Named(_), Some(_)) => {
                return Err("`files` are read with `set = \"files\"` only".into());
            }
        };
        Ok(Self {
            source,
            scaling: file.scaling,
            train_size: file.train_size,
            valid_size: file.valid_size,
            valid_fraction: file.valid_fraction,
            seq_len: file.seq_len,
            image_steps: match file.rows_as_steps {
                true => Some(ImageSteps::Rows),
                false => file.image_steps,
            },
        })
    }
}

impl From<DataConfig> for DataConfigFile {
    fn from(config: DataConfig) -> Self {
        let (set, files) = match config.source {
            DataSource::Named(set) => (SetName::Named(set), None),
            DataSource::Files(files) => (SetName::Files, Some(files)),
        };
        Self {
            set,
            files,
            scaling: config.scaling,
            train_size: config.train_size,
            valid_size: config.valid_size,
            valid_fraction: config.valid_fraction,
            seq_len: config.seq_len,
            image_steps: config.image_steps,
            rows_as_steps: false,
        }
    }
}

/// The data sets an experiment can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSet {
    /// scikit-learn's 8x8 digits, embedded.
    Digits,
    /// MNIST digits, 28x28, fetched.
    Mnist,
    /// Fashion-MNIST clothes, 28x28, fetched.
    FashionMnist,
    /// Variable-length 12-feature sequences, 9 speakers.
    JapaneseVowels,
    /// Eight plays, embedded, as a character language model.
    Shakespeare,
    /// The whole corpus, fetched.
    ShakespeareFull,
}

/// Your own data, by path: images or features, sequences, or text. Without a test file, the
/// evaluation examples are `valid_fraction` of the training file, held out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum DataFiles {
    /// IDX image and label files, raw or gzipped, as MNIST ships them.
    Idx(IdxFiles),
    /// A CSV table with a header: the class number in column `label`, the values in the others.
    Csv(CsvFiles),
    /// UEA/UCR `.ts` classification files, sequences of any length.
    Ts(TsFiles),
    /// A UTF-8 text file for the character model; its last `valid_fraction` is held out.
    Text(TextFile),
}

impl DataFiles {
    /// The names accepted for `format`.
    pub const FORMATS: [&'static str; 4] = ["idx", "csv", "ts", "text"];

    /// The files of format `format` read from their fields alone: a table without the `format`
    /// key. Read so, an error in a field keeps its path (see `NormConfig::from_options`).
    pub fn from_fields<'de, D: serde::Deserializer<'de>>(
        format: &str,
        fields: D,
    ) -> Result<Self, D::Error> {
        Ok(match format {
            "idx" => Self::Idx(IdxFiles::deserialize(fields)?),
            "csv" => Self::Csv(CsvFiles::deserialize(fields)?),
            "ts" => Self::Ts(TsFiles::deserialize(fields)?),
            "text" => Self::Text(TextFile::deserialize(fields)?),
            other => return Err(serde::de::Error::unknown_variant(other, &Self::FORMATS)),
        })
    }
}

/// `format = "idx"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdxFiles {
    /// `[N, H, W]` unsigned bytes.
    pub train_images: PathBuf,
    /// `[N]` class numbers.
    pub train_labels: PathBuf,
    /// The test split's images, if there is one.
    pub test_images: Option<PathBuf>,
    /// The test split's labels, with `test_images`.
    pub test_labels: Option<PathBuf>,
}

/// `format = "csv"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvFiles {
    /// The training table.
    pub train: PathBuf,
    /// The test table, with the same columns.
    pub test: Option<PathBuf>,
    /// The label's column.
    pub label: String,
    /// One example's `[channels, height, width]` for images; left out, a feature vector.
    pub shape: Option<[usize; 3]>,
}

/// `format = "ts"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsFiles {
    /// The training cases.
    pub train: PathBuf,
    /// The test cases, with the same class labels.
    pub test: Option<PathBuf>,
}

/// `format = "text"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextFile {
    /// The file.
    pub path: PathBuf,
}

/// The optimizer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// SGD with momentum (`train.momentum`, no dampening, as PyTorch).
    #[default]
    Sgd,
    /// Adam with PyTorch's defaults (`eps = 1e-8`).
    Adam,
}

/// How training examples are grouped into batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Batching {
    /// Shuffled anew every epoch: i.i.d. batches.
    #[default]
    Shuffled,
    /// Every batch made of pairs, the two examples of a pair from one class (non-i.i.d.; the
    /// design of Ioffe 2017, section 4.3: 16 pairs per batch of 32). Needs an even batch size.
    SameClassPairs,
    /// Every batch from two classes, half each: a stress test harsher than the paper's design,
    /// which breaks the optimizer of every norm, not only batch norm's statistics.
    TwoClasses,
}

/// How a run trains and is evaluated.
// `remote = "Self"`: serde derives its code as inherent functions, which the trait impls call;
// deserializing takes the budget's two keys out first (see `budget.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct TrainConfig {
    /// Examples per training step.
    pub batch_size: usize,
    /// Seeds the weights, dropout and batch order. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Default SGD.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// The learning rate (at `lr_reference_batch` when it scales with the batch size).
    pub lr: f64,
    /// SGD momentum. Default 0.9.
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// Weight decay on every parameter, added to its gradient as PyTorch's optimizers do.
    /// Default 0.
    #[serde(default)]
    pub weight_decay: f64,
    /// Default constant.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Share of the run over which the learning rate first rises linearly from zero. Default
    /// 0.
    #[serde(default)]
    pub warmup: f64,
    /// Default shuffled.
    #[serde(default)]
    pub batches: Batching,
    /// Scale the learning rate linearly with the batch size: `lr * batch_size / lr_reference_batch`
    /// (the GN paper's `0.1 * N / 32`).
    pub lr_reference_batch: Option<usize>,
    /// How long it trains: `epochs = 3` or `samples = 60000`, exactly one of them.
    #[serde(flatten, skip_deserializing, default = "Budget::unread")]
    pub budget: Budget,
    /// Evaluations spread evenly over the run, for the curves. Default 10.
    #[serde(default = "default_evals")]
    pub evals: usize,
    /// Evaluations inside the last 10% of training, evenly spread and ending at the last step:
    /// a run's error is their median (see [`FINAL_WINDOW`]). Default 3.
    #[serde(default = "default_final_evals")]
    pub final_evals: usize,
    /// Default 500.
    #[serde(default = "default_eval_batch_size")]
    pub eval_batch_size: usize,
    /// L1 penalty on the weights (not biases or norm parameters). Default 0.
    #[serde(default)]
    pub l1: f64,
    /// L2 penalty `l2 / 2 * sum(w^2)` on the same weights; both > 0 is Elastic Net. Default 0.
    #[serde(default)]
    pub l2: f64,
    /// Clip the gradient to this global norm (all parameters together, as PyTorch's
    /// `clip_grad_norm_`).
    pub grad_clip: Option<f64>,
    /// A run whose smoothed training loss exceeds this many times its first loss, or is not
    /// finite, is stopped and recorded as diverged. Default 10.
    #[serde(default = "default_divergence")]
    pub divergence_factor: f64,
    /// Also evaluate with batch statistics (batch norm in training mode, at the training batch
    /// size, dropout off) beside the running statistics. Default true; only batch norm differs.
    #[serde(default = "default_true")]
    pub train_mode_eval: bool,
    /// The batch size of train-mode evaluation (batch statistics). Default the training batch
    /// size.
    pub train_mode_batch_size: Option<usize>,
    /// PreciseBN: at the last evaluation, also evaluate with population statistics re-estimated
    /// as the equal-weight average over this many training batches (weights fixed), beside the
    /// moving averages; `"epoch"` averages over one pass of the training set. Only for norms
    /// with batch statistics. Default none.
    pub precise_batches: Option<PreciseBatches>,
    /// At the last evaluation, also evaluate the model with its batch norms folded into the
    /// layers before them (inference form). Default false.
    #[serde(default)]
    pub folded_eval: bool,
    /// Text sets: also evaluate on windows of these lengths (longer than training). Default none.
    #[serde(default)]
    pub eval_lengths: Vec<usize>,
    /// Record activation statistics at every norm site every `every` steps.
    pub probe: Option<ProbeConfig>,
    /// Recurrent models: record the norm of the loss's gradient with respect to every hidden
    /// state, on the first training batch, at initialization and after training (recurrent
    /// BN's Figure 1). Default false.
    #[serde(default)]
    pub gradient_flow: bool,
    /// Which computation the norm layers run: `fastest` (normlab's fused kernels where the
    /// backend has them) or `composed` (burn's tensor ops, what the kernels are measured
    /// against). Default fastest.
    #[serde(default)]
    pub norm_kernels: Kernels,
    /// Time the norm layers inside every training step, forward and backward, with a timer
    /// around the layers themselves (feed-forward models; the backward on flex only: see
    /// `normlab_model::norm_time`). Default false.
    #[serde(default)]
    pub time_norms: bool,
    /// How the run's arithmetic treats subnormal floats: `keep` (IEEE 754, as PyTorch) or
    /// `flush` (read and written as zero, on threads of their own: see
    /// `normlab_model::subnormals`). Flushing changes the numbers only where a value passes
    /// below 1.18e-38, and spares x86 CPUs their slow path there. Default keep.
    #[serde(default)]
    pub subnormals: Subnormals,
}

fn default_momentum() -> f64 {
    0.9
}
fn default_evals() -> usize {
    10
}
fn default_final_evals() -> usize {
    3
}

/// The share of training at its end whose evaluations make a run's error.
pub const FINAL_WINDOW: f64 = 0.1;

impl TrainConfig {
    /// The steps after which a run of `total` steps evaluates, in order: `evals` spread evenly
    /// over the run, and `final_evals` spread evenly over its last [`FINAL_WINDOW`] (fewer
    /// where the window has fewer steps), the last step always among them; step 0 alone for a
    /// run that trains nothing.
    pub fn eval_steps(&self, total: usize) -> Vec<usize> {
        if total == 0 {
            return vec![0];
        }
        let spread = (1..=self.evals).map(|k| (k * total).div_ceil(self.evals));
        let start = final_window_start(total);
        let last = self.final_evals.max(1);
        let window = (0..last).map(|k| match last {
            1 => total,
            _ => start + (k * (total - start)).div_ceil(last - 1),
        });
        let mut steps: Vec<usize> = spread.chain(window).filter(|&s| s >= 1).collect();
        steps.sort_unstable();
        steps.dedup();
        steps
    }
}

/// How many training batches PreciseBN averages its population statistics over.
///
/// Written in a config as a number of batches (at least 1) or as the word `"epoch"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreciseBatches {
    /// This many batches, the training order repeated when it holds fewer.
    Count(usize),
    /// Every batch of one pass over the training set: the population statistics of the whole
    /// set, as recurrent batch norm (Cooijmans et al. 2017) estimates them.
    Epoch,
}

impl PreciseBatches {
    /// The number of batches to average, given the batches in one epoch.
    pub fn count(self, batches_per_epoch: usize) -> usize {
        match self {
            Self::Count(count) => count,
            Self::Epoch => batches_per_epoch,
        }
    }
}

impl Serialize for PreciseBatches {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(count) => serializer.serialize_u64(*count as u64),
            Self::Epoch => serializer.serialize_str("epoch"),
        }
    }
}

impl<'de> Deserialize<'de> for PreciseBatches {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error, Unexpected, Visitor};

        struct CountOrEpoch;

        impl Visitor<'_> for CountOrEpoch {
            type Value = PreciseBatches;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of batches (at least 1) or \"epoch\"")
            }

            fn visit_u64<E: Error>(self, count: u64) -> Result<PreciseBatches, E> {
                match usize::try_from(count) {
                    Ok(count) if count >= 1 => Ok(PreciseBatches::Count(count)),
                    _ => Err(E::invalid_value(Unexpected::Unsigned(count), &self)),
                }
            }

            fn visit_i64<E: Error>(self, count: i64) -> Result<PreciseBatches, E> {
                match u64::try_from(count) {
                    Ok(count) => self.visit_u64(count),
                    Err(_) => Err(E::invalid_value(Unexpected::Signed(count), &self)),
                }
            }

            fn visit_str<E: Error>(self, word: &str) -> Result<PreciseBatches, E> {
                match word {
                    "epoch" => Ok(PreciseBatches::Epoch),
                    _ => Err(E::invalid_value(Unexpected::Str(word), &self)),
                }
            }
        }

        deserializer.deserialize_any(CountOrEpoch)
    }
}

/// The first step inside the final window of a run of `total` steps.
pub fn final_window_start(total: usize) -> usize {
    ((total as f64 * (1.0 - FINAL_WINDOW)).ceil() as usize).clamp(1, total.max(1))
}
fn default_eval_batch_size() -> usize {
    500
}
fn default_divergence() -> f64 {
    10.0
}
fn default_true() -> bool {
    true
}

/// When and how much the probe records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Record every this many training steps.
    pub every: usize,
    /// Units per site whose percentiles are tracked. Default 3.
    #[serde(default = "default_units")]
    pub units: usize,
}

fn default_units() -> usize {
    3
}

/// Everything one training run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// `[data]`.
    pub data: DataConfig,
    /// `[model]`.
    pub model: ModelConfig,
    /// `[train]`.
    pub train: TrainConfig,
}

impl RunConfig {
    /// The learning rate after linear scaling with the batch size.
    pub fn lr(&self) -> f64 {
        match self.train.lr_reference_batch {
            Some(reference) => self.train.lr * self.train.batch_size as f64 / reference as f64,
            None => self.train.lr,
        }
    }

    /// Checks what serde cannot: returns the offending field and why.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        let train = &self.train;
        if train.batch_size == 0 {
            return Err(("train.batch_size", "must be at least 1".into()));
        }
        if !(train.lr > 0.0 && train.lr.is_finite()) {
            return Err((
                "train.lr",
                format!("must be a finite number > 0, got {}", train.lr),
            ));
        }
        if train.evals == 0 || train.final_evals == 0 || train.eval_batch_size == 0 {
            return Err((
                "train.evals",
                "evals, final_evals and eval_batch_size must be at least 1".into(),
            ));
        }
        if !(train.weight_decay >= 0.0 && train.weight_decay.is_finite()) {
            return Err(("train.weight_decay", "must be a finite number >= 0".into()));
        }
        if !(0.0..1.0).contains(&train.warmup) {
            return Err((
                "train.warmup",
                "must be a share of the run in [0, 1)".into(),
            ));
        }
        match train.batches {
            Batching::TwoClasses if train.batch_size < 2 => {
                return Err((
                    "train.batches",
                    "two-class batches need a batch size of at least 2".into(),
                ));
            }
            Batching::SameClassPairs if !train.batch_size.is_multiple_of(2) => {
                return Err((
                    "train.batches",
                    "batches of same-class pairs need an even batch size".into(),
                ));
            }
            _ => {}
        }
        if train.gradient_flow && !matches!(self.model, ModelConfig::Recurrent(_)) {
            return Err((
                "train.gradient_flow",
                "measures the gradient through a recurrence: it needs a recurrent model".into(),
            ));
        }
        if train.lr_reference_batch == Some(0) {
            return Err(("train.lr_reference_batch", "must be at least 1".into()));
        }
        if let DataSource::Files(DataFiles::Idx(IdxFiles {
            test_images,
            test_labels,
            ..
        })) = &self.data.source
            && test_images.is_some() != test_labels.is_some()
        {
            return Err((
                "data.files",
                "give both test_images and test_labels, or neither".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.data.valid_fraction) {
            return Err(("data.valid_fraction", "must be in [0, 1)".into()));
        }
        Ok(())
    }
}
