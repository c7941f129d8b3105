//! Forward passes without gradients on an autodiff device do not keep their tensors alive once
//! `release_finished_graphs` runs after each (in its own test binary: it reads the process's
//! resident memory).

#![cfg(target_os = "linux")]

use burn::prelude::*;
use burn::tensor::Distribution;
use normlab_model::{Input, InputShape, Model, ModelConfig, Network, release_finished_graphs};

/// The resident memory of this process, in MiB (`/proc/self/statm`, 4 KiB pages).
fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux has /proc/self/statm");
    let pages: f64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096.0 / (1024.0 * 1024.0)
}

/// How far resident memory grows over `passes` forward passes of `model` on batches of four
/// sequences (28 steps of 28 values), releasing the finished graphs after each pass or not.
fn growth_mib(model: &Model, device: &Device, passes: usize, release: bool) -> f64 {
    let pass = || {
        let values = Tensor::<3>::random([4, 28, 28], Distribution::Default, device);
        let logits = model
            .forward(Input::Sequences { values, mask: None })
            .unwrap();
        let _ = logits.into_data();
        if release {
            release_finished_graphs(device);
        }
    };
    // The allocator's first blocks, and burn's own, before the measured passes.
    (0..10).for_each(|_| pass());
    let before = resident_mib();
    (0..passes).for_each(|_| pass());
    resident_mib() - before
}

#[test]
fn forward_passes_with_batch_statistics_release_their_tensors() {
    let device = Device::flex().autodiff();
    device.seed(0);
    let config: ModelConfig = toml::from_str(
        r#"kind = "recurrent"
           cell = "lstm"
           hidden = 100
           norm = { kind = "batch", per_step = 28 }"#,
    )
    .unwrap();
    let model: Model = config.init(InputShape::Sequence(28), 10, &device).unwrap();
    // Train mode without gradients: batch statistics, as PreciseBN and the train-mode score run.
    let model = model.valid().train().no_grad();
    let released = growth_mib(&model, &device, 200, true);
    let kept = growth_mib(&model, &device, 200, false);
    println!("200 passes: {released:.1} MiB released, {kept:.1} MiB kept");
    assert!(released < 16.0, "{released:.1} MiB after release");
    // What the release is for: without it, burn keeps each pass's tensors.
    assert!(kept > 4.0 * 16.0, "{kept:.1} MiB without release");
}
