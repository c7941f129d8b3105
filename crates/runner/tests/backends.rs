//! The same tiny sweeps on flex and on wgpu give the same numbers within float tolerance. CI
//! runs this on Mesa's software Vulkan driver (lavapipe), where wgpu computes on the CPU:
//! `cargo test -p normlab-runner --features wgpu --test backends`.
#![cfg(feature = "wgpu")]

use std::path::Path;
use std::process::Command;

use normlab_runner::config::Experiment;
use normlab_runner::results::{ResultsDir, RunRecord, Status};

/// Two backends sum in different orders: after a few dozen steps of training their losses
/// part by about 1e-6 relative (measured on lavapipe); a wrong kernel or a lost state parts them
/// by far more.
const TOLERANCE: f32 = 1e-4;

/// Dense layers: batch, layer, group and online norm, and the running statistics in eval mode.
const DENSE: &str = include_str!("experiments/backends_dense.toml");

/// Convolutions with batch and group norm over channels and pixels.
const CONV: &str = include_str!("experiments/backends_conv.toml");

/// Trains `config` with `--device <device>` and returns its records in grid order.
fn sweep(dir: &Path, name: &str, config: &str, device: &str) -> Vec<RunRecord> {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    let results = dir.join(device);
    let out = Command::new(env!("CARGO_BIN_EXE_normlab"))
        .args([
            "run",
            path.to_str().unwrap(),
            "--device",
            device,
            "--results",
        ])
        .arg(&results)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "normlab on {device} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let experiment = Experiment::load(&path).unwrap();
    ResultsDir::new(results.join(&experiment.name))
        .read_runs(&experiment)
        .unwrap()
}

fn close(what: &str, flex: f32, wgpu: f32) {
    let relative = (flex - wgpu).abs() / (1.0 + flex.abs());
    assert!(
        relative <= TOLERANCE,
        "{what}: flex {flex} vs wgpu {wgpu} ({relative:e} relative)"
    );
}

fn same_numbers(name: &str, config: &str) {
    let dir = normlab_testkit::scratch(&format!("backends-{name}"));
    let flex = sweep(&dir, name, config, "flex");
    let wgpu = sweep(&dir, name, config, "wgpu");
    assert_eq!(flex.len(), wgpu.len());
    for (f, w) in flex.iter().zip(&wgpu) {
        assert_eq!(f.id, w.id);
        assert_eq!((f.status, w.status), (Status::Finished, Status::Finished));
        for (a, b) in f.losses.iter().zip(&w.losses) {
            close(
                &format!("{} training loss at step {}", f.id, a.step),
                a.loss,
                b.loss,
            );
        }
        for (a, b) in f.evals.iter().zip(&w.evals) {
            let modes = |e: &normlab_runner::results::Eval| e.scores.keys().copied().collect();
            let (modes_a, modes_b): (Vec<_>, Vec<_>) = (modes(a), modes(b));
            assert_eq!(modes_a, modes_b, "{}: scored in the same modes", f.id);
            for mode in modes_a {
                close(
                    &format!("{} valid loss ({mode}) at step {}", f.id, a.step),
                    a.score(mode).unwrap().loss,
                    b.score(mode).unwrap().loss,
                );
            }
        }
        assert_eq!(f.evals.len(), w.evals.len());
    }
}

#[test]
fn dense_norms_train_alike_on_flex_and_wgpu() {
    same_numbers("dense", DENSE);
}

#[test]
fn conv_norms_train_alike_on_flex_and_wgpu() {
    same_numbers("conv", CONV);
}
