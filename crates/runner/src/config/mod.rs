//! Experiment files: TOML with `[data]`, `[model]` and `[train]` sections, any list-valued field
//! of which is a grid axis. The grid is the product of the axes.
//!
//! A field that holds a list by nature (an MLP's `hidden`, a CNN's `channels`,
//! `train.eval_lengths`: any field whose type takes a list) is an axis only when it holds a list
//! of lists.
//!
//! `[[extra]]` blocks add runs to the grid: each names values for some of the axes (for example
//! two more seeds for two norms at one batch size) and takes every value of the others.

mod grid;
mod locate;
mod schedule;
mod schema;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use normlab_model::ModelError;

use crate::axes::{AxisKey, Setting};
use toml::{Table, Value};

pub use grid::label;
pub use schedule::LrSchedule;
pub use schema::{
    Batching, DataConfig, DataFiles, DataSet, DataSource, FINAL_WINDOW, ImageSteps, OptimizerKind,
    PreciseBatches, ProbeConfig, RunConfig, TrainConfig, final_window_start,
};

use crate::config::grid::{extra_axes, find_axes, product, run_id, set};
use crate::config::locate::Locator;

/// A config file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The experiment file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML; the parser's message gives the line and column.
    #[error("{}: not valid TOML: {message}", path.display())]
    Syntax {
        /// The experiment file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A field is missing, unknown or holds a value that cannot be used.
    #[error("{}:{line}: field `{field}`: {message}", path.display())]
    Field {
        /// The experiment file.
        path: PathBuf,
        /// The 1-based line where the field is written (or its section starts).
        line: usize,
        /// The dotted field, e.g. `model.norm`.
        field: String,
        /// What is wrong, with the valid names where there is a list of them.
        message: String,
    },
}

/// One grid axis: a field of the file given a list of values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridAxis {
    /// `model.norm`
    pub path: String,
    /// Which field, as the runner knows it: named after the path's last part.
    pub key: AxisKey,
}

/// One point of the grid: a run.
#[derive(Debug, Clone)]
pub struct GridPoint {
    /// Unique within the experiment and usable as a file name.
    pub id: String,
    /// The point's label on each axis, in axis order.
    pub axes: Vec<Setting>,
    /// The run's full config.
    pub run: RunConfig,
}

/// A parsed experiment file.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// The file's stem: `experiments/quick.toml` is `quick`.
    pub name: String,
    /// Where the file was read.
    pub path: PathBuf,
    /// Its `description`, empty if none.
    pub description: String,
    /// The grid axes, in file order.
    pub axes: Vec<GridAxis>,
    /// The grid, the last axis varying fastest.
    pub points: Vec<GridPoint>,
    /// The file as written, kept with the results.
    pub text: String,
}

/// The sections an experiment file has.
pub(crate) const SECTIONS: [&str; 3] = ["data", "model", "train"];

/// The array of tables that adds runs to the grid: each block names values for some axes.
const EXTRA: &str = "extra";

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
        let mut table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let locator = Locator::new(&text);
        let field_error = |field: &str, line: usize, message: String| ConfigError::Field {
            path: path.to_path_buf(),
            line,
            field: field.to_string(),
            message,
        };
        let at_field =
            |field: &str, message: String| field_error(field, locator.line(field, None), message);
        let description = match table.remove("description") {
            None => String::new(),
            Some(Value::String(s)) => s,
            Some(_) => return Err(at_field("description", "must be a string".into())),
        };
        let extra = match table.remove(EXTRA) {
            None => Vec::new(),
            Some(Value::Array(blocks)) if blocks.iter().all(Value::is_table) => blocks,
            Some(_) => {
                let message = format!("must be `[[{EXTRA}]]` blocks of fields");
                return Err(at_field(EXTRA, message));
            }
        };
        if let Some(key) = table.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            let expected = format!(
                "unknown section, expected one of {} or `[[{EXTRA}]]`",
                SECTIONS.join(", ")
            );
            return Err(at_field(key, expected));
        }
        for section in SECTIONS {
            if !matches!(table.get(section), Some(Value::Table(_))) {
                return Err(at_field(section, format!("missing `[{section}]` section")));
            }
        }

        let axes = find_axes(&table);
        if let Some((path, _)) = axes.iter().find(|(_, values)| values.is_empty()) {
            let message = "an empty list: a grid axis needs at least one value".to_string();
            return Err(at_field(path, message));
        }
        check_grid_size(&axes).map_err(|(axis, message)| at_field(&axis, message))?;
        let mut combinations = product(&axes);
        for (index, block) in extra.iter().enumerate() {
            let block = block.as_table().expect("checked to be tables");
            let block_axes = extra_axes(&table, &axes, block).map_err(|(field, message)| {
                let line = locator.line(&format!("{EXTRA}.{index}.{field}"), None);
                field_error(&format!("{EXTRA}.{field}"), line, message)
            })?;
            check_grid_size(&block_axes).map_err(|(axis, message)| {
                let line = locator.line(&format!("{EXTRA}.{index}.{axis}"), None);
                field_error(&format!("{EXTRA}.{axis}"), line, message)
            })?;
            combinations.extend(product(&block_axes));
        }
        let mut points = Vec::new();
        let mut ids = HashSet::new();
        for values in combinations {
            let mut point = table.clone();
            let mut labels = Vec::new();
            for ((path, _), value) in axes.iter().zip(&values) {
                set(&mut point, path, value.clone());
                labels.push(label(value));
            }
            let run: RunConfig =
                serde_path_to_error::deserialize(Value::Table(point)).map_err(|e| {
                    let message = e.inner().to_string();
                    let message = message.lines().next().unwrap_or_default().to_string();
                    let (field, line) = field_of(&locator, &e.path().to_string(), &message);
                    field_error(&field, line, message)
                })?;
            run.check()
                .map_err(|(field, message)| at_field(field, message))?;
            run.model.validate().map_err(|e| {
                let (field, message) = model_field(e);
                at_field(&field, message)
            })?;
            let id = run_id(&axes, &labels);
            // An extra block may name runs the grid has already: each runs once.
            if ids.insert(id.clone()) {
                let axes = axes
                    .iter()
                    .zip(labels)
                    .map(|((path, _), label)| Setting {
                        key: key_of(path),
                        label,
                    })
                    .collect();
                points.push(GridPoint { id, axes, run });
            }
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
                .map(|(path, _)| GridAxis {
                    key: key_of(path),
                    path: path.clone(),
                })
                .collect(),
            points,
            text,
        })
    }

    /// The keys of the grid's axes, in axis order.
    pub fn axis_keys(&self) -> Vec<AxisKey> {
        self.axes.iter().map(|a| a.key.clone()).collect()
    }
}

/// The key of the axis at `path` (`model.norm`): named after its last part.
fn key_of(path: &str) -> AxisKey {
    AxisKey::from_name(path.rsplit('.').next().unwrap_or(path))
}

/// The most runs a grid (or one `[[extra]]` block) may have. A few lines of lists multiply
/// into a grid of any size; far beyond what a sweep can train, expanding it would only exhaust
/// the memory.
pub const MAX_RUNS: usize = 100_000;

/// An error naming the longest axis when the product of the axes' lengths exceeds
/// [`MAX_RUNS`].
fn check_grid_size(axes: &[grid::Axis]) -> Result<(), (String, String)> {
    let size = axes
        .iter()
        .try_fold(1usize, |size, (_, values)| size.checked_mul(values.len()));
    if size.is_some_and(|size| size <= MAX_RUNS) {
        return Ok(());
    }
    let (longest, _) = axes
        .iter()
        .max_by_key(|(_, values)| values.len())
        .expect("a grid over the limit has axes");
    let lengths: Vec<String> = axes.iter().map(|(_, v)| v.len().to_string()).collect();
    let runs = size.map_or("more than 2^64".to_string(), |s| s.to_string());
    Err((
        longest.clone(),
        format!(
            "the axes ({} values) make a grid of {runs} runs; at most {MAX_RUNS} are allowed",
            lengths.join(" x ")
        ),
    ))
}

/// The dotted field of the model's own check failing, and what is wrong.
fn model_field(error: ModelError) -> (String, String) {
    match error {
        ModelError::InvalidConfig { field, message } => (format!("model.{field}"), message),
        ModelError::Norm { source, .. } => ("model.norm".into(), source.to_string()),
        other => ("model".into(), other.to_string()),
    }
}

/// The dotted field an error is about, and its line: serde's path, extended by the unknown
/// field it names. An unknown name of an internally tagged enum (a norm's `kind`) is reported at
/// the enum's parent, so that field is found by the unknown value itself.
fn field_of(locator: &Locator, path: &str, message: &str) -> (String, usize) {
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(String::from)
    };
    if let Some(variant) = quoted("unknown variant `")
        && let Some(found) = locator.holding(&variant)
    {
        return found;
    }
    let field = match quoted("unknown field `") {
        // serde_path_to_error's path ends at the unknown field, except inside an internally
        // tagged enum, where it ends at the enum.
        Some(field) => match path {
            "." => field,
            _ if path.ends_with(&format!(".{field}")) => path.to_string(),
            _ => format!("{path}.{field}"),
        },
        None => path.to_string(),
    };
    // Inside an internally tagged enum nested in another (a norm in the model), the path ends at
    // the outer one: the unknown key is found by name below it.
    if quoted("unknown field `").is_some()
        && let Some((parent, key)) = field.rsplit_once('.')
        && let Some(found) = locator.key_below(parent, key)
    {
        return found;
    }
    let line = locator.line(&field, None);
    (field, line)
}
