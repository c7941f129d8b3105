//! Inference with batch norm folded into the layers before it, against the same trained-mode
//! network evaluating its batch norms (eval mode), on flex (CPU).
//!
//! ```text
//! cargo bench -p normlab-model --bench folding
//! ```
//!
//! Prints a table and writes `results/benchmarks/folding.{json,md}` (the machine and the date
//! with them). Times are medians of a forward pass; the largest difference between the two
//! models' logits is reported beside them.

// The allocator the runner uses: big buffers are reused instead of page-faulted in anew.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use burn::prelude::*;
use burn::tensor::Distribution;
use normlab_model::{Input, InputShape, Model, ModelConfig, Network};

const WARMUP: usize = 3;
const RUNS: usize = 20;

/// `(name, [model] section, input shape)` of each network.
fn networks() -> Vec<(&'static str, &'static str, InputShape)> {
    vec![
        (
            "cnn 8/16/32 x2 (6 conv+BN)",
            "kind = \"cnn\"\nchannels = [8, 16, 32]\nconvs_per_block = 2\nhead = \"global_average\"\nnorm = { kind = \"batch\" }",
            InputShape::Image([1, 28, 28]),
        ),
        (
            "mlp 784-256-256 (2 linear+BN)",
            "kind = \"mlp\"\nhidden = [256, 256]\nnorm = { kind = \"batch\" }",
            InputShape::Image([1, 28, 28]),
        ),
    ]
}

fn input(n: usize, device: &Device) -> Input {
    Input::Images(Tensor::random(
        [n, 1, 28, 28],
        Distribution::Default,
        device,
    ))
}

fn main() {
    let mut rows = Vec::new();
    for (name, section, shape) in networks() {
        let device = Device::flex().autodiff();
        device.seed(0);
        let config: ModelConfig = toml::from_str(section).expect("bench config");
        let model: Model = config.init(shape, 10, &device).expect("bench model");
        // A few training-mode passes give the running statistics values that are not 0 and 1.
        for _ in 0..5 {
            model.forward(input(64, &device)).expect("training pass");
        }
        let plain = Device::flex();
        let eval = model.valid();
        let folded = eval.fold_batch_norms();
        for batch in [1, 32, 256] {
            let x = input(batch, &plain);
            let difference = (eval.forward(x.clone()).unwrap()
                - folded.forward(x.clone()).unwrap())
            .abs()
            .max()
            .into_scalar::<f32>();
            let time = |model: &Model| {
                normlab_benchkit::median(WARMUP, RUNS, || {
                    let logits = model.forward(x.clone()).expect("forward");
                    let _ = logits.into_data();
                })
            };
            let (with_norms, folded_time) = (time(&eval), time(&folded));
            rows.push(normlab_benchkit::Row {
                fields: vec![("network", name.to_string()), ("batch", batch.to_string())],
                values: vec![
                    ("eval-mode BN ms", Some(with_norms.as_secs_f64() * 1e3)),
                    ("folded ms", Some(folded_time.as_secs_f64() * 1e3)),
                    (
                        "speed-up",
                        Some(with_norms.as_secs_f64() / folded_time.as_secs_f64()),
                    ),
                    ("max |logit difference|", Some(f64::from(difference))),
                ],
            });
        }
    }
    let notes = vec![
        "Forward passes on flex, f32, weights after five training-mode passes (running statistics \
         away from 0 and 1). `folded` is `Model::fold_batch_norms()`: each eval-mode batch norm \
         folded into the conv or linear layer before it. Measured while experiment sweeps ran \
         on the same two cores: the ratios hold better than the absolute times."
            .to_string(),
    ];
    normlab_benchkit::finish("normlab-model", "folding", &rows, &notes);
}
