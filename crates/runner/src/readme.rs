//! The results section of the project's README, written from the results folders: each
//! experiment's design sentence, its computed verdict or first findings, its key plot and a
//! link to its report, between two markers that nothing else writes between. A test
//! regenerates it from the committed records and fails if the committed text differs.

use std::path::{Path, PathBuf};

use crate::analysis::fmt_duration;
use crate::error::RunnerError;
use crate::report::findings::statements;
use crate::report::headline::{Outcome, batching_rule, gradient_rule, rule, summary};
use crate::result_set::ResultSet;
use crate::results::{ResultsDir, write_atomically};

/// The line before the generated section.
pub const START: &str = "<!-- results: written by `normlab readme` from results/; do not edit -->";

/// The line after it.
pub const END: &str = "<!-- results: end -->";

/// The plot that stands for an experiment in the README: the first of these it has.
const KEY_PLOTS: [&str; 9] = [
    "error_vs_batch_size.png",
    "gradient_flow.png",
    "bits_vs_length.png",
    "train_vs_eval.png",
    "error_vs_lr.png",
    "error_vs_init_scale.png",
    "percentiles.png",
    "step_time.png",
    "loss_curves.png",
];

/// How many findings stand for an experiment without a verdict.
const FINDINGS_SHOWN: usize = 3;

/// One experiment's part of the section, and where it goes.
struct Entry {
    /// Experiments whose failure shows come first.
    outcome: Outcome,
    name: String,
    text: String,
    wall: Option<f64>,
    /// The sum of the runs' own wall times: what a resumed sweep, whose wall time was not
    /// recorded, is reported by instead.
    run_seconds: f64,
}

/// The section for every results folder under `results` (but `benchmarks`), linked relative to
/// `readme_dir`: experiments whose verdict shows their effect first, then by name, and last the
/// experiment files under `experiments` that have no results folder.
pub fn section(
    results: &Path,
    experiments: &Path,
    readme_dir: &Path,
) -> Result<String, RunnerError> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(results)
        .map_err(RunnerError::io(results))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.join("experiment.toml").is_file())
        .collect();
    folders.sort();
    let mut entries = Vec::new();
    for folder in folders {
        entries.push(entry(&folder, readme_dir)?);
    }
    entries.sort_by(|a, b| b.outcome.cmp(&a.outcome).then(a.name.cmp(&b.name)));
    let mut text = format!(
        "{START}\n\nEach paragraph is computed from an experiment's run records by `normlab \
         readme`; its report gives every number with its spread over seeds. A verdict on batch \
         sizes compares {}. A verdict on gradient flow compares {}. A verdict on batch \
         composition compares {}. Experiments whose verdict shows come first. {}\n\n",
        rule(),
        gradient_rule(),
        batching_rule(),
        wall_times(&entries)
    );
    for entry in entries {
        text.push_str(&entry.text);
    }
    text.push_str(&not_run(results, experiments, readme_dir)?);
    text.push_str(END);
    Ok(text)
}

/// The suite's recorded wall time, and the experiments that have none (resumed sweeps) with
/// the sum of their runs' wall times instead.
fn wall_times(entries: &[Entry]) -> String {
    let recorded: Vec<f64> = entries.iter().filter_map(|e| e.wall).collect();
    let mut text = format!(
        "The recorded wall times of {} of the {} experiments add up to {} on the 2-core machines \
         they ran on.",
        recorded.len(),
        entries.len(),
        fmt_duration(recorded.iter().sum())
    );
    let resumed: Vec<String> = entries
        .iter()
        .filter(|e| e.wall.is_none())
        .map(|e| format!("{} ({})", e.name, fmt_duration(e.run_seconds)))
        .collect();
    if !resumed.is_empty() {
        text.push_str(&format!(
            " Not recorded, as their sweeps were resumed: {}, given as the sum of their runs' \
             wall times (runs trained two at a time take about half that).",
            resumed.join(", ")
        ));
    }
    text
}

/// A paragraph naming the experiment files under `experiments` with no results folder under
/// `results`, linked relative to `readme_dir`; empty when every file has one.
fn not_run(results: &Path, experiments: &Path, readme_dir: &Path) -> Result<String, RunnerError> {
    let mut names: Vec<String> = std::fs::read_dir(experiments)
        .map_err(RunnerError::io(experiments))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .filter_map(|path| Some(path.file_stem()?.to_string_lossy().into_owned()))
        .filter(|name| !results.join(name).join("experiment.toml").is_file())
        .collect();
    if names.is_empty() {
        return Ok(String::new());
    }
    names.sort();
    let links: Vec<String> = names
        .iter()
        .map(|name| {
            let file = relative(&experiments.join(format!("{name}.toml")), readme_dir);
            format!("[{name}]({file})")
        })
        .collect();
    Ok(format!(
        "### Not run for this version\n\nNo results are committed for {}: run one with \
         `normlab run experiments/<name>.toml`.\n\n",
        links.join(", ")
    ))
}

/// The part of the section for the results folder `folder`.
fn entry(folder: &Path, readme_dir: &Path) -> Result<Entry, RunnerError> {
    let set = ResultSet::read(&ResultsDir::new(folder))?;
    let link = relative(folder, readme_dir);
    let design = set.description.split("\n\n").next().unwrap_or_default();
    let design = design.split_whitespace().collect::<Vec<_>>().join(" ");
    let (outcome, body) = summary(&set).unwrap_or_else(|| {
        let findings = statements(&set);
        let shown: Vec<String> = findings.into_iter().take(FINDINGS_SHOWN).collect();
        (Outcome::NoSpread, shown.join(" "))
    });
    let wall = std::fs::read_to_string(folder.join("wall_seconds.txt"))
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok());
    let time = match wall {
        Some(seconds) => format!(", {}", fmt_duration(seconds)),
        None => String::new(),
    };
    let plot = KEY_PLOTS
        .iter()
        .find(|file| folder.join(file).is_file())
        .map(|file| format!("\n\n![{}: {}]({link}/{file})", set.name, plot_name(file)))
        .unwrap_or_default();
    let text = format!(
        "### [{name}]({link}/README.md){time}\n\n{design}\n\n{body}{plot}\n\n",
        name = set.name
    );
    Ok(Entry {
        outcome,
        name: set.name.clone(),
        text,
        wall,
        run_seconds: set.records.iter().map(|r| r.wall_seconds).sum(),
    })
}

/// `error_vs_batch_size.png` as `error vs batch size`.
fn plot_name(file: &str) -> String {
    file.trim_end_matches(".png").replace('_', " ")
}

/// `path` relative to `from`, with `/` separators, when it lies below it; else as given.
fn relative(path: &Path, from: &Path) -> String {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let from = std::path::absolute(from).unwrap_or_else(|_| from.to_path_buf());
    let inside = path.strip_prefix(&from).unwrap_or(&path);
    let parts: Vec<String> = inside
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

/// `text` with the part between [`START`] and [`END`] replaced by `section`; an error naming
/// `readme` when the markers are not there.
pub fn replaced(text: &str, section: &str, readme: &Path) -> Result<String, RunnerError> {
    let missing = || RunnerError::NoReadmeMarkers {
        readme: readme.to_path_buf(),
    };
    let start = text.find(START).ok_or_else(missing)?;
    let end = text[start..].find(END).ok_or_else(missing)? + start + END.len();
    Ok(format!("{}{section}{}", &text[..start], &text[end..]))
}

/// Rewrites the section of the README at `readme` from the results folders under `results` and
/// the experiment files under `experiments`.
pub fn update(readme: &Path, results: &Path, experiments: &Path) -> Result<(), RunnerError> {
    let text = std::fs::read_to_string(readme).map_err(RunnerError::io(readme))?;
    let dir = readme.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let new = replaced(&text, &section(results, experiments, dir)?, readme)?;
    write_atomically(readme, new.as_bytes()).map_err(RunnerError::io(readme))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experiment_files_without_results_are_listed_as_not_run() {
        let root = normlab_testkit::scratch("readme-not-run");
        let (results, experiments) = (root.join("results"), root.join("experiments"));
        std::fs::create_dir_all(results.join("ran")).unwrap();
        std::fs::create_dir_all(&experiments).unwrap();
        for name in ["ran", "waits", "also_waits"] {
            std::fs::write(experiments.join(format!("{name}.toml")), "").unwrap();
        }
        std::fs::write(experiments.join("notes.md"), "").unwrap();
        std::fs::write(results.join("ran/experiment.toml"), "").unwrap();

        let text = not_run(&results, &experiments, &root).unwrap();
        assert!(
            text.contains(
                "for [also_waits](experiments/also_waits.toml), [waits](experiments/waits.toml):"
            ),
            "{text}"
        );
        assert!(!text.contains("[ran]") && !text.contains("notes"), "{text}");

        std::fs::remove_file(experiments.join("waits.toml")).unwrap();
        std::fs::remove_file(experiments.join("also_waits.toml")).unwrap();
        assert_eq!(not_run(&results, &experiments, &root).unwrap(), "");
    }

    #[test]
    fn a_resumed_sweep_is_left_out_of_the_total_and_named_with_its_runs_time() {
        let entry = |name: &str, wall, run_seconds| Entry {
            outcome: Outcome::NoSpread,
            name: name.into(),
            text: String::new(),
            wall,
            run_seconds,
        };
        let entries = [
            entry("a", Some(600.0), 1100.0),
            entry("b", None, 4860.0),
            entry("c", Some(120.0), 120.0),
        ];
        assert_eq!(
            wall_times(&entries),
            "The recorded wall times of 2 of the 3 experiments add up to 12 min 0 s on the \
             2-core machines they ran on. Not recorded, as their sweeps were resumed: b (1 h 21 \
             min), given as the sum of their runs' wall times (runs trained two at a time take \
             about half that)."
        );
        assert!(!wall_times(&entries[..1]).contains("Not recorded"));
    }
}
