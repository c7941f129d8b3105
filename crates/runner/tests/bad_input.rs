//! Inputs a careless user gives the binary: each ends with a clear error and a failing exit
//! status, never a crash, a hang or a silent success.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use normlab_testkit::{Scratch, run, scratch};

/// A fresh folder for one test.
fn workspace(test: &str) -> Scratch {
    scratch(&format!("bad-{test}"))
}

/// `normlab` with `args` in `dir`, run to its end: its exit status and everything it printed.
fn normlab(args: &[&str], dir: &Path) -> (std::process::ExitStatus, String) {
    let finished = run(env!("CARGO_BIN_EXE_normlab"), args, dir);
    (finished.status, finished.output)
}

/// The run fails with exit status 1 (an error, not a signal or a panic's 101) and says
/// every one of `says`.
#[track_caller]
fn fails_saying(status: std::process::ExitStatus, text: &str, says: &[&str]) {
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    for part in says {
        assert!(text.contains(part), "{part:?} not in:\n{text}");
    }
}

const TRAIN: &str =
    "[train]\nbatch_size = 4\nlr = 0.01\noptimizer = \"adam\"\nepochs = 1\nevals = 1\n";

/// A character model on `text`, windows of 32 characters.
fn text_experiment(dir: &Path, text: &str) -> PathBuf {
    std::fs::write(dir.join("tiny.txt"), text).unwrap();
    let config = format!(
        "[data]\nset = \"files\"\nseq_len = 32\nfiles = {{ format = \"text\", path = \"tiny.txt\" }}\n\
         [model]\nkind = \"recurrent\"\ncell = \"lstm\"\nhidden = 8\noutput = \"every_step\"\n{TRAIN}"
    );
    let path = dir.join("tiny.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn a_text_too_short_for_one_window_names_the_file_its_length_and_the_window() {
    let dir = workspace("short-text");
    for text in ["ab".to_string(), "abc".to_string(), "x".repeat(50)] {
        let config = text_experiment(&dir, &text);
        let (status, out) = normlab(&["run", config.to_str().unwrap(), "--results", "out"], &dir);
        let length = format!("{} characters: too short for a window of 32", text.len());
        fails_saying(
            status,
            &out,
            &["tiny.toml: [data]: ", "tiny.txt: ", &length],
        );
        assert!(
            !dir.join("out/tiny/runs")
                .read_dir()
                .is_ok_and(|mut d| d.next().is_some())
        );
    }
    // Long enough for one window in each part (80% and 20% of 399 characters): it trains.
    let config = text_experiment(&dir, &"to be or not to be ".repeat(21));
    let (status, out) = normlab(&["run", config.to_str().unwrap(), "--results", "out"], &dir);
    assert!(status.success(), "{out}");
}

#[test]
fn an_evaluation_length_longer_than_the_evaluation_text_is_refused() {
    let dir = workspace("long-eval");
    let config = text_experiment(&dir, &"to be or not to be ".repeat(21));
    let text = std::fs::read_to_string(&config).unwrap() + "eval_lengths = [32, 128]\n";
    std::fs::write(&config, text).unwrap();
    let (status, out) = normlab(&["run", config.to_str().unwrap(), "--results", "out"], &dir);
    fails_saying(
        status,
        &out,
        &["invalid train.eval_lengths: a window of 128 characters needs 129"],
    );
}

#[test]
fn a_huge_class_number_names_the_file_the_line_and_the_value_at_once() {
    let dir = workspace("huge-label");
    let rows = [
        "a,b,label",
        "0.1,0.2,0",
        "0.3,0.4,1",
        "0.5,0.6,4000000000",
        "0.7,0.8,1",
    ];
    std::fs::write(dir.join("table.csv"), rows.join("\n")).unwrap();
    let config = format!(
        "[data]\nset = \"files\"\nfiles = {{ format = \"csv\", train = \"table.csv\", label = \"label\" }}\n\
         [model]\nkind = \"mlp\"\nhidden = [4]\n{TRAIN}"
    );
    std::fs::write(dir.join("labels.toml"), config).unwrap();
    let started = Instant::now();
    let (status, out) = normlab(&["run", "labels.toml", "--results", "out"], &dir);
    fails_saying(
        status,
        &out,
        &[
            "table.csv:4: label 4000000000 in column `label`",
            "at most 100000",
        ],
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn zero_jobs_is_refused() {
    let dir = workspace("zero-jobs");
    let (status, out) = normlab(&["run", "x.toml", "--jobs", "0"], &dir);
    assert_eq!(status.code(), Some(2), "clap's usage error: {out}");
    assert!(out.contains("0 would do nothing"), "{out}");
}

#[test]
fn compare_with_an_axis_or_value_no_run_has_lists_the_axes_and_values() {
    let dir = workspace("compare-filter");
    let config = "[data]\nset = \"digits\"\ntrain_size = 100\nvalid_size = 50\n\
                  [model]\nkind = \"mlp\"\nhidden = [4]\nnorm = [\"none\", \"layer\"]\n\
                  [train]\nbatch_size = [4, 8]\nlr = 0.01\nsamples = 40\nevals = 1\n";
    std::fs::write(dir.join("small.toml"), config).unwrap();
    let (status, out) = normlab(&["run", "small.toml", "--results", "out"], &dir);
    assert!(status.success(), "{out}");
    for only in ["nosuchaxis=1", "batch_size=3"] {
        let args = ["compare", "out/small", "--only", only, "--out", "cmp"];
        let (status, out) = normlab(&args, &dir);
        fails_saying(
            status,
            &out,
            &[
                &format!("no run matches {only}"),
                "batch_size: 4, 8",
                "norm: layer, none",
            ],
        );
        assert!(!dir.join("cmp").exists(), "{only}: nothing written");
    }
    let args = [
        "compare",
        "out/small",
        "--only",
        "batch_size=4",
        "--out",
        "cmp",
    ];
    let (status, out) = normlab(&args, &dir);
    assert!(status.success() && out.contains("2 runs compared"), "{out}");
}

#[test]
fn a_recurrent_output_that_does_not_fit_the_data_is_recorded_impossible_not_a_crash() {
    // A language model that predicts once per sequence, and images read row by row that predict
    // at every row: the predictions and the targets differ in number. The loss used to panic.
    let dir = workspace("output-mode");
    let text = text_experiment(&dir, &"to be or not to be ".repeat(21));
    let once = std::fs::read_to_string(&text)
        .unwrap()
        .replace("output = \"every_step\"", "output = \"last_step\"");
    std::fs::write(&text, once).unwrap();
    let rows = dir.join("rows.toml");
    let config = format!(
        "[data]\nset = \"digits\"\nimage_steps = \"rows\"\ntrain_size = 64\n\
         [model]\nkind = \"recurrent\"\nhidden = 8\noutput = \"every_step\"\n{TRAIN}"
    );
    std::fs::write(&rows, config).unwrap();
    for (config, wants) in [
        (&text, "the data want one at every step"),
        (&rows, "the data want one per sequence"),
    ] {
        let (status, out) = normlab(&["run", config.to_str().unwrap(), "--results", "out"], &dir);
        assert!(status.success(), "{out}");
        assert!(!out.contains("panicked"), "{out}");
        assert!(
            out.contains("impossible, recorded as such: invalid model config: `output`")
                && out.contains(wants),
            "{out}"
        );
    }
}
