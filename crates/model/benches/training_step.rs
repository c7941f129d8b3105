//! One training step (forward, cross-entropy, backward, SGD with momentum) of the networks the
//! experiments train, with and without each norm, on flex (CPU) or wgpu (GPU), beside the same
//! models in PyTorch when a Python with torch is at hand (on the CPU, or on CUDA beside a GPU).
//!
//! ```text
//! cargo bench -p normlab-model --bench training_step
//! NORMLAB_PYTHON=/path/to/python-with-torch cargo bench -p normlab-model --bench training_step
//! cargo bench -p normlab-model --features wgpu --bench training_step -- --device wgpu
//! ```
//!
//! Prints a table and writes `results/benchmarks/training_step.{json,md}`
//! (`training_step_wgpu.*` on wgpu; the machine and the date with them). Times are medians over
//! the timed steps, each ending with the device synchronised; PyTorch runs with as many threads
//! as flex, or on CUDA (`benches/pytorch/training_step.py`, the same shapes and initial
//! conditions, its own weights).

// The allocator the runner uses: big buffers are reused instead of page-faulted in anew.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use std::time::Duration;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use burn::tensor::{Distribution, Int};
use normlab_benchkit::{Backend, Row, Target};
use normlab_model::{Input, InputShape, Model, ModelConfig, Network};

/// Warm-up steps (allocations, rayon threads), then timed steps: at least `STEPS`, and more
/// until `BUDGET` of timed steps has passed (at most `MAX_STEPS`), so that a step of a few
/// milliseconds is timed a few hundred times and its median stands above a shared machine's
/// noise. PyTorch's script times its steps by the same rule.
const WARMUP: usize = 3;
const STEPS: usize = 15;
const MAX_STEPS: usize = 1000;
const BUDGET: Duration = Duration::from_secs(1);

/// One benchmarked setting.
struct Case {
    model: &'static str,
    norm: &'static str,
    batch: usize,
    /// The `[model]` section of an experiment file.
    config: String,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let norms = [
        ("none", r#"{ kind = "none" }"#),
        ("batch", r#"{ kind = "batch" }"#),
        ("group", r#"{ kind = "group", groups = 4 }"#),
        ("layer", r#"{ kind = "layer" }"#),
    ];
    let mut case = |model, norm, batch, config: String| {
        cases.push(Case {
            model,
            norm,
            batch,
            config,
        })
    };
    // The small batches first: where the small-batch experiments spend most of their steps.
    for batch in [2, 4, 32, 64] {
        for (norm, toml) in norms {
            let config =
                format!("kind = \"cnn\"\nchannels = [8, 16, 32]\nhead = \"dense\"\nnorm = {toml}");
            case("cnn", norm, batch, config);
        }
    }
    // small_batch's network: ResNet-20 of 8/16/32 channels, zero-padded shortcuts.
    for batch in [2, 4, 8, 32] {
        for (norm, toml) in [norms[0], norms[1], norms[2]] {
            let config = format!("kind = \"resnet\"\nwidths = [8, 16, 32]\nnorm = {toml}");
            case("resnet", norm, batch, config);
        }
    }
    for batch in [2, 4, 64] {
        for (norm, toml) in [norms[0], norms[1], norms[3]] {
            let config = format!("kind = \"mlp\"\nhidden = [256, 256]\nnorm = {toml}");
            case("mlp", norm, batch, config);
        }
    }
    for batch in [2, 4, 32] {
        for (norm, toml) in [
            ("none", r#"{ kind = "none" }"#),
            ("layer", r#"{ kind = "layer" }"#),
            ("batch(per_step)", r#"{ kind = "batch", per_step = 28 }"#),
        ] {
            let config =
                format!("kind = \"recurrent\"\ncell = \"lstm\"\nhidden = 64\nnorm = {toml}");
            case("lstm", norm, batch, config);
        }
    }
    cases
}

/// The input of a batch: 28x28 images (1 channel) for the CNN, ResNet and MLP, 28 steps of 28
/// features for the LSTM (row-by-row MNIST), and random labels of 10 classes.
fn batch(model: &str, n: usize, device: &Device) -> (Input, Tensor<1, Int>) {
    let labels = Tensor::<1, Int>::random([n], Distribution::Uniform(0.0, 10.0), device);
    let input = match model {
        "lstm" => Input::Sequences {
            values: Tensor::random([n, 28, 28], Distribution::Default, device),
            mask: None,
        },
        _ => Input::Images(Tensor::random(
            [n, 1, 28, 28],
            Distribution::Default,
            device,
        )),
    };
    (input, labels)
}

/// The median time of one step.
fn time_step(target: &Target, case: &Case) -> Duration {
    let device = &target.device;
    device.seed(0);
    let config: ModelConfig = toml::from_str(&case.config).expect("bench config");
    let shape = match case.model {
        "lstm" => InputShape::Sequence(28),
        _ => InputShape::Image([1, 28, 28]),
    };
    let mut model: Model = config.init(shape, 10, device).expect("bench model");
    let mut optimizer = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }))
        .init();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let mut times: Vec<Duration> = Vec::new();
    let (least, most) = (target.runs(STEPS), target.runs(MAX_STEPS));
    let mut step = 0;
    while times.len() < least || (times.iter().sum::<Duration>() < BUDGET && times.len() < most) {
        // A fresh batch every step, drawn outside the timed region.
        let (input, labels) = batch(case.model, case.batch, device);
        let (time, trained) = target.time(|| {
            let logits = model.forward(input).expect("bench input fits");
            let loss = loss_fn.forward(logits, labels);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            optimizer.step(0.01, model, grads)
        });
        model = trained;
        if step >= WARMUP {
            times.push(time);
        }
        step += 1;
    }
    times.sort();
    times[times.len() / 2]
}

fn main() -> ExitCode {
    let target = match Target::from_args() {
        Ok(target) => target,
        Err(code) => return code,
    };
    let script = "crates/model/benches/pytorch/training_step.py";
    let torch = target.pytorch(script, &[]);
    let mut rows = Vec::new();
    for case in cases() {
        let ours = time_step(&target, &case);
        let key = (case.model, case.norm, case.batch);
        let theirs = torch
            .iter()
            .find(|r| r["model"] == key.0 && r["norm"] == key.1 && r["batch"] == key.2 as u64);
        rows.push(Row {
            fields: vec![
                ("model", case.model.to_string()),
                ("norm", case.norm.to_string()),
                ("batch", case.batch.to_string()),
            ],
            values: vec![
                ("normlab ms", Some(ours.as_secs_f64() * 1e3)),
                ("PyTorch ms", theirs.and_then(|r| r["ms"].as_f64())),
            ],
        });
    }
    let normlab = match target.backend() {
        Backend::Flex => "normlab: flex (burn's CPU backend) with normlab's fused norm kernels.",
        Backend::Wgpu => {
            "normlab: wgpu (burn's fusion backend) with normlab's CubeCL norm kernels."
        }
    };
    let notes = [
        normlab.to_string(),
        target.pytorch_note(&torch, "benches/pytorch/training_step.py"),
    ];
    target.finish(env!("CARGO_PKG_NAME"), "training_step", &rows, &notes);
    ExitCode::SUCCESS
}
