//! Experiment files: TOML with `[data]`, `[model]` and `[train]` sections, any list-valued field
//! of which is a grid axis. The grid is the product of the axes.
//!
//! A field that holds a list by nature (an MLP's `hidden`, a CNN's `channels`,
//! `train.eval_lengths`: any field whose type takes a list) is an axis only when it holds a list
//! of lists.
//!
//! `[[extra]]` blocks add runs to the grid: each names values for some of the axes (for example
//! two more seeds for two norms at one batch size) and takes every value of the others.

mod budget;
mod grid;
mod locate;
mod schedule;
mod schema;
mod tagged;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use normlab_model::ModelError;

use crate::axes::{AxisKey, Setting};
use toml::{Table, Value};

pub use budget::Budget;
pub use grid::label;
pub use schedule::LrSchedule;
pub use schema::{
    Batching, CsvFiles, DataConfig, DataFiles, DataSet, DataSource, FINAL_WINDOW, IdxFiles,
    ImageSteps, OptimizerKind, PreciseBatches, ProbeConfig, RunConfig, TextFile, TrainConfig,
    TsFiles, final_window_start,
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
            |field: &str, message: String| field_error(field, locator.line(field), message);
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
        // Each combination with the `[[extra]]` block it comes from, if any.
        let mut combinations: Vec<_> = product(&axes).into_iter().map(|v| (None, v)).collect();
        let mut block_grids = Vec::new();
        for (index, block) in extra.iter().enumerate() {
            let block = block.as_table().expect("checked to be tables");
            let block_axes = extra_axes(&table, &axes, block).map_err(|(field, message)| {
                let line = locator.line(&format!("{EXTRA}.{index}.{field}"));
                field_error(&format!("{EXTRA}.{field}"), line, message)
            })?;
            check_grid_size(&block_axes).map_err(|(axis, message)| {
                let line = locator.line(&format!("{EXTRA}.{index}.{axis}"));
                field_error(&format!("{EXTRA}.{axis}"), line, message)
            })?;
            let block_points = product(&block_axes).into_iter();
            combinations.extend(block_points.map(|v| (Some(index), v)));
            block_grids.push(block_axes);
        }
        let mut points = Vec::new();
        let mut ids = HashSet::new();
        for (block, values) in combinations {
            let mut point = table.clone();
            let mut labels = Vec::new();
            for ((path, _), value) in axes.iter().zip(&values) {
                set(&mut point, path, value.clone());
                labels.push(label(value));
            }
            // An error of this run, placed at the list item or `[[extra]]` block it comes from.
            let run_error = |field: &str, message: String| {
                let block = block.map(|index| (index, &extra[index], &block_grids[index][..]));
                let (field, line) = place(&locator, field, &axes, &values, block);
                field_error(&field, line, message)
            };
            let run: RunConfig = serde_path_to_error::deserialize(Value::Table(point.clone()))
                .map_err(|e| {
                    let fault = tagged::locate(&point, e);
                    run_error(&fault.field, fault.message)
                })?;
            run.check()
                .map_err(|(field, message)| run_error(field, message))?;
            run.model.validate().map_err(|e| {
                let (field, message) = model_field(e);
                run_error(&field, message)
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

/// The field at fault in the run whose axes take `values`, as its error names it, and its line.
/// A field of a grid axis is looked up in the item of the list that the run takes
/// (`model.norm.1.groups`), in the `[[extra]]` block (`(index, block, its axes)`) that gives it
/// if one does.
fn place(
    locator: &Locator,
    field: &str,
    axes: &[grid::Axis],
    values: &[Value],
    block: Option<(usize, &Value, &[grid::Axis])>,
) -> (String, usize) {
    let Some(axis) = axes.iter().position(|(path, _)| is_within(field, path)) else {
        return (field.to_string(), locator.line(field));
    };
    let path = &axes[axis].0;
    let below = &field[path.len()..];
    let (section, key) = path.split_once('.').expect("axis paths are section.key");
    let (prefix, list, written_as_list) = match block {
        Some((index, block, block_axes))
            if let Some(written) = block.get(section).and_then(|fields| fields.get(key)) =>
        {
            (
                format!("{EXTRA}.{index}."),
                &block_axes[axis].1,
                written.is_array(),
            )
        }
        _ => (String::new(), &axes[axis].1, true),
    };
    let item = match list.iter().position(|v| *v == values[axis]) {
        Some(item) if written_as_list => format!(".{item}"),
        _ => String::new(),
    };
    let line = locator.line(&format!("{prefix}{path}{item}{below}"));
    let shown = match prefix.is_empty() {
        true => field.to_string(),
        false => format!("{EXTRA}.{field}"),
    };
    (shown, line)
}

/// Whether the dotted `field` is `path` or below it.
fn is_within(field: &str, path: &str) -> bool {
    field
        .strip_prefix(path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}
