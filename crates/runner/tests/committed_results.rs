//! The results committed under `results/` belong to the experiments committed under
//! `experiments/`: each experiment's folder holds the file it was run with and one record, made
//! with the grid's own config, for every grid point and nothing else. A config edited after its
//! sweep, a sweep never committed, or a run left over from an older grid fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use normlab_runner::config::Experiment;
use normlab_runner::results::ResultsDir;

/// Experiments with no committed results: `smoke` is CI's few-second check of the backends;
/// `small_batch_gpu` is committed with results only from a run on a GPU.
const NOT_COMMITTED: [&str; 2] = ["smoke", "small_batch_gpu"];

/// Experiments whose files changed after their last sweep and that have not run again yet: their
/// old results are removed (git history keeps them) and the README lists them as not run. Each
/// leaves this list when its new results are committed.
const NOT_RERUN_YET: [&str; 0] = [];

/// Folders of `results/` that hold no sweep.
const NOT_SWEEPS: [&str; 1] = ["benchmarks"];

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The names of the entries of `dir` whose path passes `keep`, sorted.
fn names(dir: &Path, keep: impl Fn(&Path) -> bool) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| keep(path))
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn experiment_files() -> Vec<PathBuf> {
    let dir = checkout().join("experiments");
    names(&dir, |p| p.extension().is_some_and(|e| e == "toml"))
        .into_iter()
        .map(|name| dir.join(name))
        .filter(|path| {
            let name = path.file_stem().unwrap().to_str().unwrap();
            !NOT_COMMITTED.contains(&name) && !NOT_RERUN_YET.contains(&name)
        })
        .collect()
}

#[test]
fn experiments_not_rerun_yet_have_no_results_and_the_readme_says_so() {
    let readme = std::fs::read_to_string(checkout().join("README.md")).unwrap();
    for name in NOT_RERUN_YET.iter().chain(&NOT_COMMITTED) {
        assert!(
            checkout()
                .join("experiments")
                .join(format!("{name}.toml"))
                .is_file(),
            "{name}: no experiment file"
        );
        assert!(
            !checkout().join("results").join(name).exists(),
            "results/{name} is committed: take {name} off the list"
        );
        assert!(
            readme.contains(&format!("[{name}](experiments/{name}.toml)")),
            "the README does not list {name} as not run"
        );
    }
}

#[test]
fn every_experiment_has_the_records_of_its_whole_grid_and_nothing_else() {
    let mut problems = Vec::new();
    for file in experiment_files() {
        let experiment = Experiment::load(&file).unwrap();
        let results = ResultsDir::new(checkout().join("results").join(&experiment.name));
        let name = &experiment.name;
        match std::fs::read_to_string(results.config_file()) {
            Ok(text) if text == experiment.text => {}
            Ok(_) => problems.push(format!("{name}: experiment.toml differs from {file:?}")),
            Err(e) => {
                problems.push(format!("{name}: no results ({e})"));
                continue;
            }
        }

        let records = results.read_runs(&experiment).unwrap();
        for point in &experiment.points {
            match records.iter().find(|r| r.id == point.id) {
                None => problems.push(format!("{name}: no record of {}", point.id)),
                Some(record) if record.config != point.run => {
                    problems.push(format!("{name}: {} ran with another config", point.id))
                }
                Some(_) => {}
            }
        }
        let expected: BTreeSet<String> = experiment
            .points
            .iter()
            .map(|p| format!("{}.json", p.id))
            .collect();
        for stray in names(&results.runs(), |_| true).difference(&expected) {
            problems.push(format!("{name}: runs/{stray} is no run of the grid"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_sweep_in_results_has_its_experiment_file() {
    let committed: BTreeSet<String> = experiment_files()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let folders = names(&checkout().join("results"), |p| p.is_dir());
    let orphans: Vec<&String> = folders
        .iter()
        .filter(|name| !NOT_SWEEPS.contains(&name.as_str()) && !committed.contains(*name))
        .collect();
    assert!(
        orphans.is_empty(),
        "results without an experiment file: {orphans:?}"
    );
}

/// The folders of `results/` that hold a sweep.
fn sweep_folders() -> Vec<PathBuf> {
    let results = checkout().join("results");
    names(&results, |p| p.is_dir())
        .into_iter()
        .filter(|name| !NOT_SWEEPS.contains(&name.as_str()))
        .map(|name| results.join(name))
        .collect()
}

/// The first line where two texts differ, for a failure message that shows where.
fn first_difference(committed: &str, regenerated: &str) -> String {
    let pairs = committed.lines().zip(regenerated.lines()).enumerate();
    match pairs.into_iter().find(|(_, (a, b))| a != b) {
        Some((i, (a, b))) => format!("line {}:\n  committed:   {a}\n  regenerated: {b}", i + 1),
        None => format!(
            "one text is longer ({} vs {} lines)",
            committed.lines().count(),
            regenerated.lines().count()
        ),
    }
}

#[test]
fn every_report_is_what_its_records_give() {
    let mut problems = Vec::new();
    for folder in sweep_folders() {
        let plots = normlab_testkit::scratch("report-plots");
        let regenerated = normlab_runner::sweep::report_text(&folder, &plots).unwrap();
        let committed = std::fs::read_to_string(folder.join("README.md")).unwrap_or_default();
        if committed != regenerated {
            let name = folder.file_name().unwrap().to_string_lossy();
            let at = first_difference(&committed, &regenerated);
            problems.push(format!("{name}/README.md (run `normlab plot`): {at}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readme_results_section_is_what_the_records_give() {
    let readme = checkout().join("README.md");
    let committed = std::fs::read_to_string(&readme).unwrap();
    let section = normlab_runner::readme::section(
        &checkout().join("results"),
        &checkout().join("experiments"),
        &checkout(),
    );
    let regenerated = normlab_runner::readme::replaced(&committed, &section.unwrap(), &readme);
    let regenerated = regenerated.unwrap();
    assert!(
        committed == regenerated,
        "README.md's results section differs from what `normlab readme` writes: {}",
        first_difference(&committed, &regenerated)
    );
}
