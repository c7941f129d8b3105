//! Experiment files: TOML with `[data]`, `[model]` and `[train]` sections, any list-valued field
//! of which is a grid axis. The grid is the product of the axes.
//!
//! A field that holds a list by nature (an MLP's `hidden`, a CNN's `channels`,
//! `train.eval_lengths`) is an axis only when it holds a list of lists.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use normlab_data::ScalerConfig;
use normlab_model::ModelConfig;
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// A config file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{}:{line}: field `{field}`: {message}", path.display())]
    Field {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
}

/// Where the data comes from and how it is prepared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub set: DataSet,
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
}

fn default_valid_fraction() -> f64 {
    0.2
}

fn default_seq_len() -> usize {
    64
}

/// The data sets an experiment can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSet {
    /// scikit-learn's 8x8 digits, embedded.
    Digits,
    Mnist,
    FashionMnist,
    /// Variable-length 12-feature sequences, 9 speakers.
    JapaneseVowels,
    /// Eight plays, embedded, as a character language model.
    Shakespeare,
    /// The whole corpus, fetched.
    ShakespeareFull,
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

/// How a run trains and is evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub batch_size: usize,
    /// Seeds the weights, dropout and batch order. Default 0.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub optimizer: OptimizerKind,
    pub lr: f64,
    /// SGD momentum. Default 0.9.
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// Scale the learning rate linearly with the batch size: `lr * batch_size / lr_reference_batch`
    /// (the GN paper's `0.1 * N / 32`).
    pub lr_reference_batch: Option<usize>,
    /// Training budget in passes over the training set...
    pub epochs: Option<f64>,
    /// ...or in examples seen, so that small and large batches see the same data.
    pub samples: Option<usize>,
    /// Evaluations spread over the run. Default 10.
    #[serde(default = "default_evals")]
    pub evals: usize,
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
    /// size) beside the running statistics. Default true; only batch norm differs.
    #[serde(default = "default_true")]
    pub train_mode_eval: bool,
    /// Text sets: also evaluate on windows of these lengths (longer than training). Default none.
    #[serde(default)]
    pub eval_lengths: Vec<usize>,
    /// Record activation statistics at every norm site every `every` steps.
    pub probe: Option<ProbeConfig>,
}

fn default_momentum() -> f64 {
    0.9
}
fn default_evals() -> usize {
    10
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
    pub data: DataConfig,
    pub model: ModelConfig,
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
    fn check(&self) -> Result<(), (&'static str, String)> {
        let train = &self.train;
        match (train.epochs, train.samples) {
            (Some(e), None) if e > 0.0 => {}
            (None, Some(s)) if s > 0 => {}
            _ => {
                return Err((
                    "train.epochs",
                    "give exactly one training budget: `epochs` (> 0) or `samples` (> 0)".into(),
                ));
            }
        }
        if train.batch_size == 0 {
            return Err(("train.batch_size", "must be at least 1".into()));
        }
        if !(train.lr > 0.0 && train.lr.is_finite()) {
            return Err((
                "train.lr",
                format!("must be a finite number > 0, got {}", train.lr),
            ));
        }
        if train.evals == 0 || train.eval_batch_size == 0 {
            return Err((
                "train.evals",
                "evals and eval_batch_size must be at least 1".into(),
            ));
        }
        if train.lr_reference_batch == Some(0) {
            return Err(("train.lr_reference_batch", "must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.data.valid_fraction) {
            return Err(("data.valid_fraction", "must be in [0, 1)".into()));
        }
        Ok(())
    }
}

/// One grid axis: a field of the file given a list of values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Axis {
    /// `model.norm`
    pub path: String,
    /// `norm`: the path's last part, what plots and tables call it.
    pub name: String,
}

/// One point of the grid: a run.
#[derive(Debug, Clone)]
pub struct GridPoint {
    /// Unique within the experiment and usable as a file name.
    pub id: String,
    /// The value of each axis at this point, in axis order, as short labels.
    pub labels: Vec<String>,
    pub run: RunConfig,
}

/// A parsed experiment file.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// The file's stem: `experiments/quick.toml` is `quick`.
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    pub axes: Vec<Axis>,
    pub points: Vec<GridPoint>,
    /// The file as written, kept with the results.
    pub text: String,
}

const SECTIONS: [&str; 3] = ["data", "model", "train"];

impl Experiment {
    /// Reads and checks `path` and expands its grid.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, text)
    }

    /// Parses `text` as if read from `path`.
    pub fn parse(path: &Path, text: String) -> Result<Self, ConfigError> {
        let field_error = |field: &str, message: String| ConfigError::Field {
            path: path.to_path_buf(),
            line: locate(&text, field),
            field: field.to_string(),
            message,
        };
        let mut table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let description = match table.remove("description") {
            None => String::new(),
            Some(Value::String(s)) => s,
            Some(_) => return Err(field_error("description", "must be a string".into())),
        };
        if let Some(key) = table.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            return Err(field_error(
                key,
                format!("unknown section, expected one of {}", SECTIONS.join(", ")),
            ));
        }
        for section in SECTIONS {
            if !matches!(table.get(section), Some(Value::Table(_))) {
                return Err(field_error(
                    section,
                    format!("missing `[{section}]` section"),
                ));
            }
        }

        let axes = find_axes(&table);
        let mut points = Vec::new();
        for values in product(&axes) {
            let mut point = table.clone();
            let mut labels = Vec::new();
            for ((path, _), value) in axes.iter().zip(&values) {
                set(&mut point, path, value.clone());
                labels.push(label(value));
            }
            expand_norm_shorthand(&mut point);
            let run: RunConfig =
                serde_path_to_error::deserialize(Value::Table(point)).map_err(|e| {
                    let message = e.inner().to_string();
                    let message = message.lines().next().unwrap_or_default().to_string();
                    let field = field_of(&text, &e.path().to_string(), &message);
                    field_error(&field, message)
                })?;
            run.check()
                .map_err(|(field, message)| field_error(field, message))?;
            let id = run_id(&axes, &labels);
            points.push(GridPoint { id, labels, run });
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "experiment".into());
        Ok(Self {
            name,
            path: path.to_path_buf(),
            description,
            axes: axes
                .iter()
                .map(|(path, _)| Axis {
                    name: path.rsplit('.').next().unwrap_or(path).to_string(),
                    path: path.clone(),
                })
                .collect(),
            points,
            text,
        })
    }

    /// The index of the axis called `name` (`norm`, `batch_size`, ...).
    pub fn axis(&self, name: &str) -> Option<usize> {
        self.axes.iter().position(|a| a.name == name)
    }
}

/// Fields that hold a list by nature: an axis only as a list of lists.
fn is_native_list(table: &Table, section: &str, key: &str) -> bool {
    let model_kind = table
        .get("model")
        .and_then(|m| m.get("kind"))
        .and_then(Value::as_str);
    matches!(
        (section, key, model_kind),
        ("model", "hidden", Some("mlp")) | ("model", "channels", _) | ("train", "eval_lengths", _)
    )
}

/// The grid axes: `(path, values)` in section order, then key order.
fn find_axes(table: &Table) -> Vec<(String, Vec<Value>)> {
    let mut axes = Vec::new();
    for section in SECTIONS {
        let Some(Value::Table(fields)) = table.get(section) else {
            continue;
        };
        for (key, value) in fields {
            let Value::Array(items) = value else { continue };
            let nested = items.iter().all(|v| v.is_array());
            if !is_native_list(table, section, key) || (nested && !items.is_empty()) {
                axes.push((format!("{section}.{key}"), items.clone()));
            }
        }
    }
    axes
}

/// Every combination of one value per axis, the last axis varying fastest.
fn product(axes: &[(String, Vec<Value>)]) -> Vec<Vec<Value>> {
    axes.iter().fold(vec![Vec::new()], |points, (_, values)| {
        points
            .iter()
            .flat_map(|point| {
                values.iter().map(move |v| {
                    let mut next = point.clone();
                    next.push(v.clone());
                    next
                })
            })
            .collect()
    })
}

fn set(table: &mut Table, path: &str, value: Value) {
    let (section, key) = path.split_once('.').expect("axis paths are section.key");
    if let Some(Value::Table(fields)) = table.get_mut(section) {
        fields.insert(key.to_string(), value);
    }
}

/// `norm = "batch"` is short for `norm = { kind = "batch" }`.
fn expand_norm_shorthand(table: &mut Table) {
    if let Some(Value::Table(model)) = table.get_mut("model")
        && let Some(Value::String(kind)) = model.get("norm")
    {
        let mut norm = Table::new();
        norm.insert("kind".into(), Value::String(kind.clone()));
        model.insert("norm".into(), Value::Table(norm));
    }
}

/// A short label for an axis value: `0.1`, `batch`, `group(groups=4)`, `[16,32]`.
pub fn label(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Table(t) => {
            let kind = t.get("kind").map(label).unwrap_or_default();
            let options: Vec<String> = t
                .iter()
                .filter(|(k, _)| k.as_str() != "kind")
                .map(|(k, v)| format!("{k}={}", label(v)))
                .collect();
            match options.is_empty() {
                true => kind,
                false => format!("{kind}({})", options.join(",")),
            }
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(label).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// A file-name-safe id from the axis labels: `norm=group(groups=4),batch_size=8`.
fn run_id(axes: &[(String, Vec<Value>)], labels: &[String]) -> String {
    if axes.is_empty() {
        return "run".into();
    }
    let mut id = String::new();
    for ((path, _), label) in axes.iter().zip(labels) {
        let name = path.rsplit('.').next().unwrap_or(path);
        let _ = write!(id, "{}{name}={label}", if id.is_empty() { "" } else { "," });
    }
    id.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '=' | ',' | '-' | '_' | '(' | ')' => c,
            _ => '_',
        })
        .collect()
}

/// The dotted field an error is about: serde's path, extended by the unknown field it names. An
/// unknown variant inside an internally tagged enum (a norm's `kind`) is reported at the enum's
/// parent, so the field is the one whose line holds the unknown value.
fn field_of(text: &str, path: &str, message: &str) -> String {
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(String::from)
    };
    if let Some(field) = quoted("unknown field `") {
        // serde_path_to_error's path ends at the unknown field, except inside an internally
        // tagged enum, where it ends at the enum.
        return match path {
            "." => field,
            _ if path.ends_with(&format!(".{field}")) => path.to_string(),
            _ => format!("{path}.{field}"),
        };
    }
    if let Some(variant) = quoted("unknown variant `")
        && let Some(field) = field_holding(text, &format!("\"{variant}\""))
    {
        return field;
    }
    path.to_string()
}

/// The dotted key of the first line that contains `needle`.
fn field_holding(text: &str, needle: &str) -> Option<String> {
    let mut section = String::new();
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = header.trim().to_string();
        } else if line.contains(needle)
            && let Some((key, _)) = line.split_once('=')
        {
            return Some(format!("{section}.{}", key.trim()));
        }
    }
    None
}

/// The 1-based line that best matches the dotted `field`: the line setting the longest prefix
/// of it (a key in a `[section]`, or inside an inline table on that line). Line 1 if none.
fn locate(text: &str, field: &str) -> usize {
    let target: Vec<&str> = field.split('.').collect();
    let mut section: Vec<String> = Vec::new();
    let mut best = (0, 1);
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = header.split('.').map(|s| s.trim().to_string()).collect();
            let depth = matched(&target, &section);
            if depth > best.0 {
                best = (depth, index + 1);
            }
            continue;
        }
        let Some((key, rest)) = line.split_once('=') else {
            continue;
        };
        let mut path = section.clone();
        path.extend(key.trim().split('.').map(|s| s.trim().to_string()));
        let mut depth = matched(&target, &path);
        // A deeper field written inside an inline table on this line.
        if depth == path.len() && depth < target.len() && rest.contains(target[depth]) {
            depth = target.len();
        }
        if depth > best.0 {
            best = (depth, index + 1);
        }
    }
    best.1
}

/// How many leading parts `path` shares with `target`, or 0 if it leaves it.
fn matched(target: &[&str], path: &[String]) -> usize {
    let shared = target.iter().zip(path).take_while(|(t, p)| *t == p).count();
    if shared == path.len() { shared } else { 0 }
}
