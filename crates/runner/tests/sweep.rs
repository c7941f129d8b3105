//! The `normlab` binary on tiny sweeps over the embedded digits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use normlab_runner::axes::AxisKey;
use normlab_runner::config::Experiment;
use normlab_runner::results::{EvalMode, LOSS_POINTS, ResultsDir, RunRecord, Status};
use normlab_testkit::{Scratch, png_size, scratch};

/// A fresh folder for one test, holding its experiment file and results.
fn workspace(test: &str, config: &str) -> (Scratch, PathBuf) {
    let dir = scratch(test);
    let path = dir.write(&format!("{test}.toml"), config);
    (dir, path)
}

fn normlab(config: &Path, results: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_normlab"));
    command
        .args([
            "run",
            config.to_str().unwrap(),
            "--results",
            results.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn run_to_end(config: &Path, results: &Path) -> String {
    run_to_end_with(config, results, &[])
}

/// `normlab run` with further arguments, to its end; its output.
fn run_to_end_with(config: &Path, results: &Path, args: &[&str]) -> String {
    let out = normlab(config, results).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "normlab failed:\n{text}");
    text
}

fn records(config: &Path, results: &Path) -> Vec<RunRecord> {
    let experiment = Experiment::load(config).unwrap();
    ResultsDir::new(results.join(&experiment.name))
        .read_runs(&experiment)
        .unwrap()
}

/// A record without its timings, which differ from run to run.
fn untimed(mut record: RunRecord) -> RunRecord {
    record.wall_seconds = 0.0;
    record.step_seconds = 0.0;
    record
}

const SMALL: &str = include_str!("experiments/small.toml");

#[test]
fn an_interrupted_sweep_resumes_without_losing_or_repeating_a_run() {
    let (dir, config) = workspace("resume", SMALL);
    let interrupted = dir.join("interrupted");
    let mut child = normlab(&config, &interrupted).spawn().unwrap();
    let runs = interrupted.join("resume/runs");
    let started = Instant::now();
    // Kill it once at least one run has finished, mid-way through the grid.
    let finished = || {
        runs.read_dir().map_or(0, |d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension() == Some("json".as_ref()))
            })
            .count()
        })
    };
    while finished() < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no run finished"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let survivors = records(&config, &interrupted).len();
    assert!(
        (1..12).contains(&survivors),
        "{survivors} runs survived the kill"
    );

    let log = run_to_end(&config, &interrupted);
    assert!(
        log.contains(&format!("{survivors} finished earlier")),
        "{log}"
    );

    let uninterrupted = dir.join("uninterrupted");
    run_to_end(&config, &uninterrupted);
    let resumed: Vec<_> = records(&config, &interrupted)
        .into_iter()
        .map(untimed)
        .collect();
    let whole: Vec<_> = records(&config, &uninterrupted)
        .into_iter()
        .map(untimed)
        .collect();
    assert_eq!(resumed.len(), 12);
    // Same config and seed, same numbers: resuming changed nothing, and runs are deterministic.
    assert_eq!(resumed, whole);
}

/// The ids of the runs a sweep's log says it trained.
fn trained_ids(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.starts_with('['))
        .filter_map(|l| {
            l.split_once("] ")?
                .1
                .split_once(": ")
                .map(|(id, _)| id.to_string())
        })
        .collect()
}

#[test]
fn shards_in_one_folder_or_merged_from_several_equal_the_unsharded_sweep() {
    let (dir, config) = workspace("shards", SMALL);
    let whole_dir = dir.join("whole");
    run_to_end(&config, &whole_dir);
    let whole: Vec<_> = records(&config, &whole_dir)
        .into_iter()
        .map(untimed)
        .collect();
    assert_eq!(whole.len(), 12);

    // Three concurrent processes per layout: one shared folder, and one folder per shard.
    let wait = |children: Vec<std::process::Child>| -> Vec<String> {
        children
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
            .collect()
    };
    let shared = dir.join("shared");
    let logs = wait(
        (0..3)
            .map(|i| {
                normlab(&config, &shared)
                    .args(["--shard", &format!("{i}/3")])
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    let mut trained: Vec<String> = logs.iter().flat_map(|log| trained_ids(log)).collect();
    trained.sort();
    assert_eq!(trained.len(), 12, "every run trained once: {trained:?}");
    trained.dedup();
    assert_eq!(trained.len(), 12);
    let sharded: Vec<_> = records(&config, &shared).into_iter().map(untimed).collect();
    assert_eq!(sharded, whole);

    let separate: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("shard{i}"))).collect();
    wait(
        separate
            .iter()
            .enumerate()
            .map(|(i, folder)| {
                normlab(&config, folder)
                    .args(["--shard", &format!("{i}/3")])
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    let merged = dir.join("merged");
    let status = Command::new(env!("CARGO_BIN_EXE_normlab"))
        .arg("merge")
        .args(separate.iter().map(|f| f.join("shards")))
        .args(["--out", merged.join("shards").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let joined: Vec<_> = records(&config, &merged).into_iter().map(untimed).collect();
    assert_eq!(joined, whole);
    let summary = |root: &Path| std::fs::read_to_string(root.join("shards/summary.csv")).unwrap();
    let without_times = |csv: String| -> Vec<String> {
        // step_ms and wall_s differ from run to run; every other column must match.
        csv.lines()
            .map(|l| {
                let cells: Vec<&str> = l.split(',').collect();
                [&cells[..cells.len() - 3], &cells[cells.len() - 1..]]
                    .concat()
                    .join(",")
            })
            .collect()
    };
    assert_eq!(
        without_times(summary(&merged)),
        without_times(summary(&whole_dir))
    );
    // The shards' machine (this one, once) comes along.
    let machines = |root: &Path| std::fs::read_to_string(root.join("shards/machine.txt")).unwrap();
    assert_eq!(machines(&merged), machines(&separate[0]));
    assert_eq!(machines(&merged).lines().count(), 1);

    // Several concurrent unsharded processes in one folder: still every run once.
    let crowded = dir.join("crowded");
    let logs = wait(
        (0..3)
            .map(|_| normlab(&config, &crowded).spawn().unwrap())
            .collect(),
    );
    let mut trained: Vec<String> = logs.iter().flat_map(|log| trained_ids(log)).collect();
    trained.sort();
    let count = trained.len();
    trained.dedup();
    assert_eq!((count, trained.len()), (12, 12), "no run trained twice");
}

#[test]
fn divergent_and_impossible_runs_are_recorded_and_the_sweep_goes_on() {
    let config = SMALL
        .replace("lr = 0.05", "lr = [0.05, 1000.0]")
        .replace("batch_size = [4, 16]", "batch_size = [1, 16]")
        .replace("seed = [0, 1]", "seed = 0")
        .replace("\"none\", \"batch\", \"layer\"", "\"batch\", \"layer\"");
    let (dir, path) = workspace("diverge", &config);
    let log = run_to_end(&path, &dir);
    let records = records(&path, &dir);
    assert_eq!(records.len(), 8, "{log}");
    for record in &records {
        let (norm, batch, lr) = (
            record.label(&AxisKey::Norm).unwrap(),
            record.label(&AxisKey::BatchSize).unwrap(),
            record.label(&AxisKey::Lr).unwrap(),
        );
        let expected = match (norm, batch, lr) {
            ("batch", "1", _) => Status::Impossible,
            (_, _, "1000.0") => Status::Diverged,
            _ => Status::Finished,
        };
        assert_eq!(
            record.status, expected,
            "{}: {:?}",
            record.id, record.reason
        );
        if expected == Status::Impossible {
            let reason = record.reason.as_deref().unwrap();
            assert!(
                reason.contains("BatchNorm(32 features)") && reason.contains("one value"),
                "{reason}"
            );
        }
    }
}

#[test]
fn a_tiny_run_leaves_a_summary_plots_and_a_report() {
    let (dir, path) = workspace("tiny", SMALL);
    run_to_end(&path, &dir);
    let results = dir.join("tiny");
    let summary = std::fs::read_to_string(results.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 13, "{summary}");
    assert!(
        summary.starts_with("id,norm,batch_size,seed,status,valid_error"),
        "{summary}"
    );
    for plot in [
        "loss_curves.png",
        "error_vs_batch_size.png",
        "train_vs_eval.png",
    ] {
        let (width, height) = png_size(&results.join(plot));
        assert!(width >= 800 && height >= 400, "{plot}: {width}x{height}");
    }
    let scaler = std::fs::read_to_string(results.join("scaler.json")).unwrap();
    assert!(
        scaler.contains("\"min_max\"") && scaler.contains("\"digits\""),
        "{scaler}"
    );
    let report = std::fs::read_to_string(results.join("README.md")).unwrap();
    assert!(
        report.contains("cargo run -- run") || report.contains("cargo run --release -- run"),
        "{report}"
    );
    assert!(report.contains("loss_curves.png") && report.contains("error_vs_batch_size.png"));
    // The report the sweep wrote is the one its records give (the wall time included, which the
    // sweep knows to the nanosecond and the folder to a tenth of a second).
    let redrawn = dir.join("redrawn");
    std::fs::create_dir_all(&redrawn).unwrap();
    let regenerated = normlab_runner::sweep::report_text(&results, &redrawn).unwrap();
    assert_eq!(report, regenerated);
    // The machine that trained the runs, for `verify` to compare with its own.
    let machines = std::fs::read_to_string(results.join("machine.txt")).unwrap();
    assert_eq!(machines.lines().count(), 1, "{machines}");
    assert!(machines.trim_end().ends_with(" threads"), "{machines}");

    // `plot` redraws from the saved runs without training.
    std::fs::remove_file(results.join("loss_curves.png")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_normlab"))
        .args(["plot", results.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    png_size(&results.join("loss_curves.png"));
}

#[test]
fn a_long_run_records_window_means_of_its_loss_up_to_its_last_step() {
    // 1003 steps in windows of 3: 334 whole windows and the last step alone.
    let config = SMALL
        .replace(r#"norm = ["none", "batch", "layer"]"#, r#"norm = "layer""#)
        .replace("batch_size = [4, 16]", "batch_size = 4")
        .replace("seed = [0, 1]", "seed = 0")
        .replace("samples = 2400", "samples = 4012");
    let (dir, config) = workspace("windows", &config);
    run_to_end(&config, &dir);
    let record = records(&config, &dir).pop().unwrap();
    assert_eq!((record.steps, record.samples), (1003, 4012));
    assert!(record.losses.len() <= LOSS_POINTS);
    assert_eq!(record.losses.len(), 335);
    let ends: Vec<(usize, usize)> = record.losses.iter().map(|l| (l.step, l.samples)).collect();
    assert_eq!(ends[..2], [(3, 12), (6, 24)]);
    assert_eq!(ends[334], (1003, 4012));
}

#[test]
fn a_missing_data_set_stops_the_sweep_before_training_and_names_the_fetch_command() {
    let config = SMALL.replace("set = \"digits\"", "set = \"mnist\"");
    let (dir, path) = workspace("missing", &config);
    let out = normlab(&path, &dir)
        .env("NORMLAB_DATA", dir.join("nothing-here"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("scripts/fetch-data.sh mnist"), "{stderr}");
    assert!(
        !dir.join("missing/runs")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );
}

#[test]
fn check_lists_the_grid_the_impossible_runs_and_the_time_without_training() {
    let config = SMALL.replace("batch_size = [4, 16]", "batch_size = [1, 16]");
    let (dir, path) = workspace("check", &config);
    let out = Command::new(env!("CARGO_BIN_EXE_normlab"))
        .args(["check", path.to_str().unwrap()])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("check.toml: 12 runs: norm (3) x batch_size (2) x seed (2)"),
        "{stdout}"
    );
    assert!(stdout.contains("2 runs cannot train"), "{stdout}");
    assert!(
        stdout.contains("norm=batch,batch_size=1,seed=0: hidden 1: BatchNorm"),
        "{stdout}"
    );
    assert!(stdout.contains("estimated time: "), "{stdout}");
    assert!(
        !dir.join("results").exists(),
        "nothing trained, nothing written"
    );
}

#[test]
fn compare_overlays_the_runs_of_several_folders() {
    let (dir, first) = workspace("first", SMALL);
    let second = dir.join("second.toml");
    std::fs::write(&second, SMALL.replace("lr = 0.05", "lr = 0.02")).unwrap();
    run_to_end(&first, &dir);
    run_to_end(&second, &dir);
    let out = dir.join("comparison");
    let status = Command::new(env!("CARGO_BIN_EXE_normlab"))
        .args([
            "compare",
            "--only",
            "batch_size=4",
            "--out",
            out.to_str().unwrap(),
        ])
        .args([dir.join("first"), dir.join("second")])
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(text.contains("12 runs of "), "{text}");
    // One column for the folder a run comes from, then the folders' own axes.
    assert!(
        text.contains("| experiment | norm | batch_size | runs |"),
        "{text}"
    );
    for (folder, norm) in [("first", "none"), ("first", "batch"), ("second", "layer")] {
        assert!(
            text.contains(&format!("| {folder} | {norm} | 4 | 2 |")),
            "{folder}: {norm}: {text}"
        );
    }
    assert!(!text.contains("| 16 |"), "only batch size 4: {text}");
    assert!(out.join("loss_curves.png").is_file());
}

/// Writes the files of a small two-class problem in every format the runner reads, beside the
/// experiment files of `dir`, and returns the `[data]` and `[model]` sections that use each.
fn own_files(dir: &Path) -> Vec<(&'static str, String)> {
    let value = |i: usize, j: usize| ((i * 7 + j * 3) % 11) as f32 / 10.0 + (i % 2) as f32;
    let mut csv = String::from("a,b,c,d,label\n");
    let mut ts = String::from("@problemName Own\n@classLabel true low high\n@data\n");
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for i in 0..80 {
        let row: Vec<String> = (0..4).map(|j| value(i, j).to_string()).collect();
        csv.push_str(&format!("{},{}\n", row.join(","), i % 2));
        let steps: Vec<String> = (0..3 + i % 4).map(|j| value(i, j).to_string()).collect();
        let class = ["low", "high"][i % 2];
        ts.push_str(&format!("{}:{class}\n", steps.join(",")));
        pixels.extend((0..16).map(|j| (value(i, j) * 100.0) as u8));
        labels.push((i % 2) as u8);
    }
    let idx = |magic: &[u8], dims: &[u32], bytes: &[u8]| {
        let mut file = magic.to_vec();
        dims.iter().for_each(|d| file.extend(d.to_be_bytes()));
        file.extend(bytes);
        file
    };
    let files = dir.join("own");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("table.csv"), csv).unwrap();
    std::fs::write(files.join("cases.ts"), ts).unwrap();
    std::fs::write(
        files.join("images.idx"),
        idx(&[0, 0, 8, 3], &[80, 4, 4], &pixels),
    )
    .unwrap();
    std::fs::write(files.join("labels.idx"), idx(&[0, 0, 8, 1], &[80], &labels)).unwrap();
    let text = "to be or not to be, that is the question. ".repeat(40);
    std::fs::write(files.join("words.txt"), text).unwrap();
    let mlp = "[model]\nkind = \"mlp\"\nhidden = [8]\nnorm = \"layer\"";
    let rnn = "[model]\nkind = \"recurrent\"\nhidden = 8\nnorm = \"layer\"";
    vec![
        (
            "csv",
            format!(
                "[data]\nset = \"files\"\nfiles = {{ format = \"csv\", train = \"own/table.csv\", \
                 label = \"label\" }}\n{mlp}"
            ),
        ),
        (
            "idx",
            "[data]\nset = \"files\"\nfiles = { format = \"idx\", train_images = \
             \"own/images.idx\", train_labels = \"own/labels.idx\" }\n[model]\nkind = \
             \"cnn\"\nchannels = [4]\nnorm = \"batch\""
                .to_string(),
        ),
        (
            "ts",
            format!(
                "[data]\nset = \"files\"\nfiles = {{ format = \"ts\", train = \"own/cases.ts\", \
                 test = \"own/cases.ts\" }}\n{rnn}"
            ),
        ),
        (
            "text",
            format!(
                "[data]\nset = \"files\"\nseq_len = 8\nfiles = {{ format = \"text\", path = \
                 \"own/words.txt\" }}\n{rnn}\noutput = \"every_step\""
            ),
        ),
    ]
}

#[test]
fn your_own_files_train_like_the_named_sets_and_bad_ones_name_file_and_line() {
    let (dir, _) = workspace("own", "");
    for (format, sections) in own_files(&dir) {
        let config = dir.join(format!("{format}.toml"));
        let train =
            "[train]\nbatch_size = 8\nlr = 0.01\noptimizer = \"adam\"\nepochs = 1\nevals = 1";
        std::fs::write(&config, format!("{sections}\n{train}\n")).unwrap();
        // From another working directory: the files are found beside the experiment.
        let out = Command::new(env!("CARGO_BIN_EXE_normlab"))
            .args(["run", config.to_str().unwrap(), "--results"])
            .arg(dir.join("results"))
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{format}: {log}");
        let runs = records(&config, &dir.join("results"));
        assert_eq!(runs.len(), 1, "{format}");
        assert_eq!(
            runs[0].status,
            Status::Finished,
            "{format}: {:?}",
            runs[0].reason
        );
    }

    let table = dir.join("own/table.csv");
    let text = std::fs::read_to_string(&table).unwrap();
    std::fs::write(&table, text.replacen("0.7,", "0.7x,", 1)).unwrap();
    let out = normlab(&dir.join("csv.toml"), &dir.join("broken"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("table.csv:") && stderr.contains("\"0.7x\" in column"),
        "{stderr}"
    );
}

#[test]
fn asking_for_more_examples_than_a_split_has_names_both_numbers() {
    for (field, size) in [("train_size", 100_000_000), ("valid_size", 5000)] {
        let config = SMALL.replace("train_size = 600", &format!("{field} = {size}"));
        let (dir, path) = workspace(&format!("too-many-{field}"), &config);
        let out = normlab(&path, &dir).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(&format!("invalid {field}: {size} examples asked, but the"))
                && stderr.contains("split has only"),
            "{stderr}"
        );
    }
}

#[test]
fn the_remedies_train_and_report_precise_and_folded_scores() {
    let config = include_str!("experiments/remedies.toml");
    let (dir, path) = workspace("remedies", config);
    let results = dir.join("results");
    run_to_end(&path, &results);
    let records = records(&path, &results);
    assert_eq!(records.len(), 7);
    for record in &records {
        assert_eq!(record.status, Status::Finished, "{}", record.id);
        let last = record.final_eval().unwrap();
        let batch_statistics = record.config.model.norm().uses_batch_statistics();
        let has = |mode| last.score(mode).is_some();
        assert_eq!(has(EvalMode::Precise), batch_statistics, "{}", record.id);
        assert_eq!(has(EvalMode::TrainMode), batch_statistics, "{}", record.id);
        // Folding changes how eval computes, not what.
        let (folded, eval) = (last.score(EvalMode::Folded), last.score(EvalMode::Eval));
        let (folded, eval) = (folded.unwrap().error, eval.unwrap().error);
        assert!((folded - eval).abs() < 0.01, "{}", record.id);
        // Only the last evaluation pays for PreciseBN and folding.
        let first = &record.evals[0];
        assert!(
            first.score(EvalMode::Precise).is_none() && first.score(EvalMode::Folded).is_none()
        );
    }
    let report = std::fs::read_to_string(results.join("remedies/README.md")).unwrap();
    assert!(
        report.contains("PreciseBN error, last evaluation (%)")
            && report.contains("folded error, last evaluation (%)")
    );
}

#[test]
fn evaluating_with_batch_statistics_leaves_dropout_training_as_it_was() {
    // Batch norm and dropout, scored in train mode at every evaluation: the score's dropout
    // would draw from the random numbers that training's masks come from.
    let config = SMALL
        .replace(
            r#"norm = ["none", "batch", "layer"]"#,
            "norm = \"batch\"\ndropout = 0.3",
        )
        .replace("batch_size = [4, 16]", "batch_size = 8")
        .replace("seed = [0, 1]", "seed = 0");
    let rarely = config.replace("evals = 3", "evals = 1");
    let (dir, often) = workspace("dropout-evals", &config);
    let rarely = dir.write("dropout-evals-rarely.toml", &rarely);
    let losses = |config: &Path, results: &str| {
        let results = dir.join(results);
        run_to_end(config, &results);
        let [record] = &records(config, &results)[..] else {
            panic!("one run")
        };
        assert!(
            record
                .final_eval()
                .unwrap()
                .score(EvalMode::TrainMode)
                .is_some()
        );
        record.losses.clone()
    };
    assert_eq!(losses(&often, "often"), losses(&rarely, "rarely"));
}

#[test]
fn timed_norm_layers_are_recorded_on_both_kernel_paths_with_the_same_numbers() {
    let config = include_str!("experiments/norm_time.toml");
    let (dir, path) = workspace("norm-time", config);
    let results = dir.join("results");
    run_to_end(&path, &results);
    let records = records(&path, &results);
    assert_eq!(records.len(), 4);
    for record in &records {
        let time = record.norm_seconds.expect("timed");
        assert!(time.forward > 0.0 && time.backward > 0.0, "{}", record.id);
        assert!(time.total < record.step_seconds, "{}", record.id);
    }
    // The two paths compute the same layers: the same losses to float rounding.
    for pair in records.chunks(2) {
        let (fused, composed) = (&pair[0], &pair[1]);
        let kernels = AxisKey::NormKernels;
        assert_eq!(fused.label(&kernels), Some("fastest"));
        assert_eq!(composed.label(&kernels), Some("composed"));
        for (a, b) in fused.losses.iter().zip(&composed.losses) {
            assert!(
                (a.loss - b.loss).abs() < 1e-4,
                "{}: {a:?} vs {b:?}",
                fused.id
            );
        }
        // ...summed in other orders, so not bit for bit: the composed path did run.
        assert_ne!(fused.losses, composed.losses, "{}", fused.id);
    }
}

#[test]
fn two_jobs_train_two_runs_at_once_with_the_numbers_of_one_job() {
    // Two runs of the same length: side by side, each one's wall time spans most of the
    // sweep's, so together they take about twice the sweep's time; one after the other, about
    // the sweep's time. Overlap, not speed: it holds on one core as on many.
    let config = SMALL
        .replace(r#"norm = ["none", "batch", "layer"]"#, r#"norm = "batch""#)
        .replace("batch_size = [4, 16]", "batch_size = 4")
        .replace("samples = 2400", "samples = 24000");
    let (dir, config) = workspace("jobs", &config);
    let results = dir.join("results");
    run_to_end_with(&config, &results, &["--jobs", "2"]);
    let runs: f64 = records(&config, &results)
        .iter()
        .map(|r| r.wall_seconds)
        .sum();
    let sweep: f64 = std::fs::read_to_string(results.join("jobs/wall_seconds.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        runs > 1.5 * sweep,
        "the runs took {runs:.2} s in all within a sweep of {sweep:.2} s: they did not overlap"
    );

    let one_job = dir.join("one_job");
    run_to_end(&config, &one_job);
    let numbers =
        |results: &Path| -> Vec<_> { records(&config, results).into_iter().map(untimed).collect() };
    assert_eq!(numbers(&results), numbers(&one_job));
}
