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
//! against PyTorch. `flush-denormals` (x86-64 only) makes this thread's float arithmetic treat
//! subnormal numbers as zero, to measure what they cost; it changes the numbers, so nothing
//! that records results uses it. `scripts/profile-step.sh` runs the profiles that
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
    let (steps, batch, config) = match &args[..] {
        [steps, batch, config] => (steps, batch, config),
        [steps, batch, config, flag] if flag == "flush-denormals" => {
            flush_denormals()?;
            (steps, batch, config)
        }
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
    let ms = start.elapsed().as_secs_f64() * 1e3 / steps as f64;
    println!("{ms:.2} ms per step");
    Ok(())
}

/// Sets the flush-to-zero and denormals-are-zero bits of this thread's MXCSR: the vector unit
/// then reads and writes subnormal floats as zero instead of taking its slow path for them.
#[cfg(target_arch = "x86_64")]
fn flush_denormals() -> Result<(), String> {
    const FLUSH_TO_ZERO: u32 = 1 << 15;
    const DENORMALS_ARE_ZERO: u32 = 1 << 6;
    let mut mxcsr: u32 = 0;
    // SAFETY: `stmxcsr` and `ldmxcsr` read and write this thread's SSE control register through
    // a valid pointer to a local `u32`; x86-64 always has SSE. Only the treatment of subnormal
    // numbers changes, and this example records no results. Only this thread is changed:
    // rayon's worker threads keep the default, so a parallel op still takes the slow path.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut mxcsr, options(nostack));
        mxcsr |= FLUSH_TO_ZERO | DENORMALS_ARE_ZERO;
        std::arch::asm!("ldmxcsr [{}]", in(reg) &mxcsr, options(nostack));
    }
    Ok(())
}

#[cfg(not(target_arch = "x86_64"))]
fn flush_denormals() -> Result<(), String> {
    Err("flush-denormals is written for x86-64 only".into())
}
