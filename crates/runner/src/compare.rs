//! `normlab compare`: runs of several results folders in the same plots and one table. The
//! folders' result sets become one ([`ResultSet::combine`]): each series is a folder's norm
//! (`small_batch: batch`), and the other axes of all the folders are the comparison's axes, `-`
//! where a folder does not have one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::axes::AxisKey;
use crate::error::RunnerError;
use crate::plot::draw_all;
use crate::report::{plot_section, table};
use crate::result_set::{ResultSet, read_folder};
use crate::results::write_atomically;

/// Draws the runs of `folders` that match every `only` (`(axis, label)`) into `out`: the plots
/// and a `README.md` with the table of final metrics. Returns the number of runs compared. An
/// axis or label that no run has is an error listing the axes and labels there are.
pub fn compare(
    folders: &[PathBuf],
    only: &[(String, String)],
    out: &Path,
) -> Result<usize, RunnerError> {
    let sets = folders
        .iter()
        .map(|folder| read_folder(folder))
        .collect::<Result<Vec<_>, _>>()?;
    let mut compared = ResultSet::combine("compare", sets);
    let only: Vec<(AxisKey, String)> = only
        .iter()
        .map(|(axis, label)| (AxisKey::from_name(axis), label.clone()))
        .collect();
    let labels = available(&compared);
    check_filter(&only, &labels)?;
    compared.retain(&only);
    if compared.records.is_empty() {
        return Err(RunnerError::NoMatch {
            filter: filter_text(&only),
            available: available_text(&labels),
        });
    }
    let names: Vec<String> = folders.iter().map(|f| f.display().to_string()).collect();
    compared.description = format!("Runs of {}.", names.join(", "));

    std::fs::create_dir_all(out).map_err(RunnerError::io(out))?;
    let plots = draw_all(&compared, out)?;
    let filter = match only.is_empty() {
        true => String::new(),
        false => format!(", only {}", filter_text(&only)),
    };
    let text = [
        format!(
            "# Comparison\n\n{} runs of {}{filter}: each series is a folder's norm.\n\n",
            compared.records.len(),
            names.join(", ")
        ),
        plot_section(&plots),
        table(&compared),
    ]
    .concat();
    let path = out.join("README.md");
    write_atomically(&path, text.as_bytes()).map_err(RunnerError::io(&path))?;
    Ok(compared.records.len())
}

/// Every label each axis takes in the recorded runs.
fn available(set: &ResultSet) -> BTreeMap<String, BTreeSet<String>> {
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for setting in set.records.iter().flat_map(|r| &r.axes) {
        let key = setting.key.to_string();
        labels.entry(key).or_default().insert(setting.label.clone());
    }
    labels
}

/// An error if an axis of `only` is in no folder, or a label in no run of it.
fn check_filter(
    only: &[(AxisKey, String)],
    labels: &BTreeMap<String, BTreeSet<String>>,
) -> Result<(), RunnerError> {
    for (key, label) in only {
        let known = labels.get(key.name());
        if known.is_none_or(|known| !known.contains(label)) {
            return Err(RunnerError::NoMatch {
                filter: format!("{key}={label}"),
                available: available_text(labels),
            });
        }
    }
    Ok(())
}

/// `a=1, b=2`.
fn filter_text(only: &[(AxisKey, String)]) -> String {
    let parts: Vec<String> = only.iter().map(|(a, v)| format!("{a}={v}")).collect();
    parts.join(", ")
}

/// One line per axis with its labels: `batch_size: 1, 2, 4`.
fn available_text(labels: &BTreeMap<String, BTreeSet<String>>) -> String {
    let lines: Vec<String> = labels
        .iter()
        .map(|(axis, labels)| {
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            format!("  {axis}: {}", labels.join(", "))
        })
        .collect();
    lines.join("\n")
}
