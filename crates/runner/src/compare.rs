//! `normlab compare`: runs of several results folders in the same plots and one table. Each
//! series is named after its folder and norm (`small_batch: batch`); the other axes of all the
//! folders become the axes of the comparison, `-` where a folder does not have one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::analysis::norm_label;
use crate::config::{Experiment, GridAxis, GridPoint};
use crate::error::RunnerError;
use crate::plot::draw_all;
use crate::report::{plot_section, table};
use crate::results::{ResultsDir, RunRecord, write_atomically};
use crate::sweep::experiment_of;

/// Draws the runs of `folders` that match every `only` (`(axis, value)`) into `out`: the plots
/// and a `README.md` with the table of final metrics. Returns the number of runs compared.
pub fn compare(
    folders: &[PathBuf],
    only: &[(String, String)],
    out: &Path,
) -> Result<usize, RunnerError> {
    let mut axis_names: Vec<String> = vec!["norm".into()];
    let mut loaded = Vec::new();
    // Every value each axis takes in the folders, to check `only` against.
    let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for folder in folders {
        let dir = ResultsDir::new(folder);
        let experiment = experiment_of(&dir)?;
        let all = dir.read_runs(&experiment)?;
        for (axis, value) in all.iter().flat_map(|r| &r.axes) {
            values
                .entry(axis.clone())
                .or_default()
                .insert(value.clone());
        }
        let records: Vec<RunRecord> = all
            .into_iter()
            .filter(|r| only.iter().all(|(axis, value)| r.axis(axis) == Some(value)))
            .collect();
        for axis in &experiment.axes {
            if !axis_names.contains(&axis.name) {
                axis_names.push(axis.name.clone());
            }
        }
        loaded.push((experiment, records));
    }

    check_filter(only, &values)?;
    if loaded.iter().all(|(_, records)| records.is_empty()) {
        return Err(RunnerError::NoMatch {
            filter: filter_text(only),
            available: available_text(&values),
        });
    }

    let mut points = Vec::new();
    let mut records = Vec::new();
    for (experiment, own) in loaded {
        for mut record in own {
            let norm = format!("{}: {}", experiment.name, norm_label(&record));
            let labels: Vec<String> = axis_names
                .iter()
                .map(|name| match name.as_str() {
                    "norm" => norm.clone(),
                    other => record.axis(other).unwrap_or("-").to_string(),
                })
                .collect();
            record.id = format!("{}/{}", experiment.name, record.id);
            record.axes = axis_names.iter().cloned().zip(labels.clone()).collect();
            points.push(GridPoint {
                id: record.id.clone(),
                labels,
                run: record.config.clone(),
            });
            records.push(record);
        }
    }
    let names: Vec<String> = folders.iter().map(|f| f.display().to_string()).collect();
    let compared = Experiment {
        name: "compare".into(),
        path: out.join("compare.toml"),
        description: format!("Runs of {}.", names.join(", ")),
        axes: axis_names
            .iter()
            .map(|name| GridAxis {
                path: name.clone(),
                name: name.clone(),
            })
            .collect(),
        points,
        text: String::new(),
    };

    std::fs::create_dir_all(out).map_err(RunnerError::io(out))?;
    let plots = draw_all(&compared, &records, out)?;
    let filter = match only.is_empty() {
        true => String::new(),
        false => format!(", only {}", filter_text(only)),
    };
    let text = [
        format!(
            "# Comparison\n\n{} runs of {}{filter}: each series is a folder's norm.\n\n",
            records.len(),
            names.join(", ")
        ),
        plot_section(&plots),
        table(&compared, &records),
    ]
    .concat();
    let path = out.join("README.md");
    write_atomically(&path, text.as_bytes()).map_err(RunnerError::io(&path))?;
    Ok(records.len())
}

/// An error if an axis of `only` is in no folder, or a value in no run of it.
fn check_filter(
    only: &[(String, String)],
    values: &BTreeMap<String, BTreeSet<String>>,
) -> Result<(), RunnerError> {
    for (axis, value) in only {
        let known = values.get(axis);
        if known.is_none_or(|known| !known.contains(value)) {
            return Err(RunnerError::NoMatch {
                filter: format!("{axis}={value}"),
                available: available_text(values),
            });
        }
    }
    Ok(())
}

/// `a=1, b=2`.
fn filter_text(only: &[(String, String)]) -> String {
    let parts: Vec<String> = only.iter().map(|(a, v)| format!("{a}={v}")).collect();
    parts.join(", ")
}

/// One line per axis with its values: `batch_size: 1, 2, 4`.
fn available_text(values: &BTreeMap<String, BTreeSet<String>>) -> String {
    let lines: Vec<String> = values
        .iter()
        .map(|(axis, values)| {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            format!("  {axis}: {}", values.join(", "))
        })
        .collect();
    lines.join("\n")
}
