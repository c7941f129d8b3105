//! `normlab verify` on the committed `results/quick`: it retrains the runs the headline verdict
//! rests on, prints the committed and the new error of each, and fails when the verdict no
//! longer holds.

use std::path::{Path, PathBuf};

use normlab_runner::results::{EvalMode, RunRecord};
use normlab_testkit::run;

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `normlab verify <folder> --runs <runs>` from the checkout: exit code and output.
fn verify(folder: &Path, runs: usize) -> (Option<i32>, String) {
    let args = [
        "verify",
        folder.to_str().unwrap(),
        "--runs",
        &runs.to_string(),
    ];
    let finished = run(env!("CARGO_BIN_EXE_normlab"), &args, &checkout());
    (finished.status.code(), finished.output)
}

/// The table rows `verify` printed: `(run, committed, here)`.
fn rows(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter(|line| line.starts_with("| norm="))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            (cells[0].into(), cells[1].into(), cells[2].into())
        })
        .collect()
}

#[test]
fn the_committed_quick_verdict_holds_on_this_machine() {
    let (code, text) = verify(&checkout().join("results/quick"), 4);
    assert_eq!(code, Some(0), "{text}");
    let rows = rows(&text);
    // The verdict's runs come first: batch norm at batch size 2, every seed, then the
    // batch-free norm it is compared with at the same batch size.
    let ids: Vec<&str> = rows.iter().map(|(id, ..)| id.as_str()).collect();
    assert_eq!(
        ids[..3],
        [
            "norm=batch,batch_size=2,seed=0",
            "norm=batch,batch_size=2,seed=1",
            "norm=batch,batch_size=2,seed=2",
        ],
        "{text}"
    );
    let reference = ids[3];
    assert!(
        (reference.starts_with("norm=layer,") || reference.starts_with("norm=group("))
            && reference.ends_with(",batch_size=2,seed=0"),
        "{text}"
    );
    for (id, committed, here) in &rows {
        assert!(
            committed.ends_with('%') && here.ends_with('%'),
            "{id}: {text}"
        );
    }
    assert!(
        text.contains("Verdict, committed: `batch` at batch size 2"),
        "{text}"
    );
    assert!(
        text.contains("The verdict holds on this machine."),
        "{text}"
    );
    // Where the committed runs were trained, beside this machine: quick's folder predates
    // machine.txt, so the caveat about other kinds of CPU follows.
    assert!(
        text.contains("Trained on: not recorded") && text.contains("Retrained on: "),
        "{text}"
    );
    assert!(text.contains("only on the same kind of CPU"), "{text}");
}

#[test]
fn a_verdict_the_runs_do_not_reproduce_fails() {
    // A copy of quick whose batch-norm runs at batch size 2 claim 1% error: batch norm would
    // be the better norm there, which retraining contradicts.
    let copy = normlab_testkit::scratch("verify");
    let folder = copy.join("quick");
    std::fs::create_dir_all(folder.join("runs")).unwrap();
    let source = checkout().join("results/quick");
    std::fs::copy(
        source.join("experiment.toml"),
        folder.join("experiment.toml"),
    )
    .unwrap();
    for entry in std::fs::read_dir(source.join("runs")).unwrap() {
        let path = entry.unwrap().path();
        let mut record: RunRecord =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if record.id.starts_with("norm=batch,batch_size=2,") {
            for eval in &mut record.evals {
                eval.scores.get_mut(&EvalMode::Eval).unwrap().error = 0.01;
            }
        }
        let target = folder.join("runs").join(path.file_name().unwrap());
        std::fs::write(target, serde_json::to_string(&record).unwrap()).unwrap();
    }
    let (code, text) = verify(&folder, 3);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("| 1.00% |"), "{text}");
    assert!(text.contains("DOES NOT HOLD on this machine"), "{text}");
}
