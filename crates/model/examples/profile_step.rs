//! Repeats one training step (forward, cross-entropy, backward, SGD with momentum) of one model
//! for a sampling profiler to look at, and prints the mean step time.
//!
//! ```text
//! cargo build --release -p normlab-model --example profile_step
//! perf record -F 999 -o lstm.perf target/release/examples/profile_step 300 32 \
//!     'kind = "recurrent"
//!      cell = "lstm"
//!      hidden = 64
//!      norm = { kind = "none" }'
//! perf report -i lstm.perf --no-children --sort symbol --stdio
//! ```
//!
//! Arguments: steps, batch size, the `[model]` section of an experiment file, and optionally
//! `flush-denormals`. Images are 28x28 with one channel; a recurrent model reads 28 steps of 28
//! features (row-by-row MNIST), as in `benches/training_step.rs`, which times the same step
//! against PyTorch. `flush-denormals` runs the steps on a `FlushingPool`, whose threads read and
//! write subnormal numbers as zero, to measure what they cost (an experiment asks for the same
//! with `subnormals = "flush"`). `scripts/profile-step.sh` runs the profiles that
//! `results/benchmarks/profiles/lstm_step.md` shows.

// The allocator the runner uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use burn::tensor::{Distribution, Int};
use normlab_model::subnormals::FlushingPool;
use normlab_model::{Input, InputShape, Model, ModelConfig, Network};

fn main() {
    if let Err(message) = run() {
        eprintln!("{message}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let usage = "usage: profile_step STEPS BATCH 'MODEL TOML' [flush-denormals] (STEPS and BATCH \
                 at least 1)";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (steps, batch, config, flush) = match &args[..] {
        [steps, batch, config] => (steps, batch, config, false),
        [steps, batch, config, flag] if flag == "flush-denormals" => (steps, batch, config, true),
        _ => return Err(usage.into()),
    };
    let count = |text: &str| text.parse::<usize>().ok().filter(|&k| k > 0).ok_or(usage);
    let (steps, n) = (count(steps)?, count(batch)?);
    let config: ModelConfig =
        toml::from_str(config).map_err(|e| format!("the [model] section: {e}"))?;
    let recurrent = matches!(config, ModelConfig::Recurrent(_));
    let shape = match recurrent {
        true => InputShape::Sequence(28),
        false => InputShape::Image([1, 28, 28]),
    };
    let ms = match flush {
        true => FlushingPool::new()
            .map_err(|e| e.to_string())?
            .install(|| time_steps(steps, n, config, recurrent, shape))?,
        false => time_steps(steps, n, config, recurrent, shape)?,
    };
    println!("{ms:.2} ms per step");
    Ok(())
}

/// The mean time in milliseconds of `steps` training steps of `config` at batch size `n`.
fn time_steps(
    steps: usize,
    n: usize,
    config: ModelConfig,
    recurrent: bool,
    shape: InputShape,
) -> Result<f64, String> {
    let device = Device::flex().autodiff();
    device.seed(0);
    let mut model: Model = config.init(shape, 10, &device).map_err(|e| e.to_string())?;
    let momentum = MomentumConfig {
        momentum: 0.9,
        dampening: 0.0,
        nesterov: false,
    };
    let mut optimizer = SgdConfig::new().with_momentum(Some(momentum)).init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let start = Instant::now();
    for _ in 0..steps {
        let values = |shape: [usize; 3]| Tensor::random(shape, Distribution::Default, &device);
        let input = match recurrent {
            true => Input::Sequences {
                values: values([n, 28, 28]),
                mask: None,
            },
            false => Input::Images(values([n, 28, 28]).reshape([n, 1, 28, 28])),
        };
        let labels = Tensor::<1, Int>::random([n], Distribution::Uniform(0.0, 10.0), &device);
        let logits = model.forward(input).map_err(|e| e.to_string())?;
        let grads = GradientsParams::from_grads(loss_fn.forward(logits, labels).backward(), &model);
        model = optimizer.step(0.01, model, grads);
    }
    Ok(start.elapsed().as_secs_f64() * 1e3 / steps as f64)
}
