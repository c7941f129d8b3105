//! Forward and forward+backward time of every norm layer on flex (CPU), beside burn-nn's layer
//! of the same kind, PyTorch's (when a Python with torch is at hand) and the memory floor.
//!
//! ```text
//! cargo bench -p normlab-norm --bench norm_layers
//! NORMLAB_PYTHON=/path/to/python-with-torch cargo bench -p normlab-norm --bench norm_layers
//! ```
//!
//! A norm layer is memory-bound: its forward must read the activation and write the output (2x
//! the activation's bytes), its backward read the input and the output gradient and write the
//! input gradient (3x more). The floor is that traffic at this machine's copy bandwidth,
//! measured first. Times are medians; the table goes to `results/benchmarks/norm_layers.md`.

// The allocator the runner uses: big buffers are reused instead of page-faulted in anew.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use burn::module::Module;
use burn::nn::{
    BatchNormConfig as BurnBatchNorm, GroupNormConfig as BurnGroupNorm,
    InstanceNormConfig as BurnInstanceNorm, LayerNormConfig as BurnLayerNorm,
    RmsNormConfig as BurnRmsNorm,
};
use burn::prelude::*;
use burn::tensor::Distribution;
use normlab_benchkit::{Row, copy_bandwidth, finish, median, pytorch, torch_version};
use normlab_norm::NormConfig;
use serde_json::Value;

/// One layer on one input: how normlab runs it and what it is set against.
struct Case<'a, const D: usize> {
    /// The family's name, as PyTorch's script names it.
    layer: &'static str,
    /// normlab's configuration (JSON, as in an experiment file).
    config: &'static str,
    /// `fused` where flex runs normlab's own kernels, `composed` where burn ops.
    path: &'static str,
    /// burn-nn's layer of the same kind on this input, if it has one.
    burn: Option<Layer<'a, D>>,
}

/// A layer's forward twice: with parameters that take no gradient (for the forward alone, as
/// PyTorch's `no_grad`: a graph that is never walked back would keep every activation alive),
/// and trainable.
type Layer<'a, const D: usize> = [&'a dyn Fn(Tensor<D>) -> Tensor<D>; 2];

fn case<'a, const D: usize>(
    layer: &'static str,
    config: &'static str,
    path: &'static str,
    burn: Option<Layer<'a, D>>,
) -> Case<'a, D> {
    Case {
        layer,
        config,
        path,
        burn,
    }
}

/// Median times in milliseconds of `layer` on `x`: forward in training mode, then forward +
/// backward of the sum.
fn measure<const D: usize>(x: &Tensor<D>, [frozen, trainable]: Layer<'_, D>) -> [f64; 2] {
    let forward = median(3, 21, || {
        black_box(frozen(x.clone()));
    });
    let backward = median(3, 21, || {
        let input = x.clone().require_grad();
        let grads = trainable(input.clone()).sum().backward();
        black_box(input.grad(&grads));
    });
    [forward, backward].map(|t| t.as_secs_f64() * 1e3)
}

/// PyTorch's time of `layer` on `shape` for `pass`, if its script measured it.
fn pytorch_ms(torch: &[Value], layer: &str, shape: &[usize], pass: &str) -> Option<f64> {
    let shape: Vec<Value> = shape.iter().map(|&d| Value::from(d)).collect();
    torch
        .iter()
        .find(|r| {
            r["layer"] == layer && r["shape"] == Value::Array(shape.clone()) && r["pass"] == pass
        })
        .and_then(|r| r["ms"].as_f64())
}

/// Measures every case on `x` and appends two rows (forward, forward+backward) per case.
fn bench<const D: usize>(
    rows: &mut Vec<Row>,
    torch: &[Value],
    bandwidth: f64,
    x: Tensor<D>,
    cases: &[Case<D>],
) {
    let shape = x.dims();
    let bytes = (x.shape().num_elements() * 4) as f64;
    for case in cases {
        let config: NormConfig = serde_json::from_str(case.config).expect("bench config");
        let init = || config.init(shape[1], &x.device()).expect("bench layer");
        let (layer, frozen) = (init(), init().no_grad());
        let ours = measure(
            &x,
            [&|t| frozen.forward(t).expect("bench input fits"), &|t| {
                layer.forward(t).expect("bench input fits")
            }],
        );
        let burn = case.burn.map(|f| measure(&x, f));
        for (i, (pass, traffic)) in [("forward", 2.0), ("forward+backward", 5.0)]
            .into_iter()
            .enumerate()
        {
            rows.push(Row {
                fields: vec![
                    ("layer", case.config.to_string()),
                    ("shape", format!("{shape:?}")),
                    ("pass", pass.to_string()),
                    ("path", case.path.to_string()),
                ],
                values: vec![
                    ("normlab ms", Some(ours[i])),
                    ("burn-nn ms", burn.map(|b| b[i])),
                    ("PyTorch ms", pytorch_ms(torch, case.layer, &shape, pass)),
                    ("floor ms", Some(traffic * bytes / bandwidth * 1e3)),
                ],
            });
        }
    }
}

/// The same for padded sequences `[N, T, C]` with a mask (the last quarter of every other
/// sequence is padding): the masked statistics are composed from burn ops on every backend.
fn bench_masked(rows: &mut Vec<Row>, bandwidth: f64, x: Tensor<3>, configs: &[&'static str]) {
    let [n, t, c] = x.dims();
    let device = x.device();
    let lengths: Vec<i64> = (0..n)
        .map(|i| if i % 2 == 0 { t } else { t * 3 / 4 } as i64)
        .collect();
    let lengths = Tensor::<1, Int>::from_data(TensorData::new(lengths, [n]), &device);
    let steps = Tensor::<1, Int>::arange(0..t as i64, &device);
    let mask = steps.unsqueeze_dim::<2>(0).lower(lengths.unsqueeze_dim(1));
    let bytes = (x.shape().num_elements() * 4) as f64;
    for config_text in configs {
        let config: NormConfig = serde_json::from_str(config_text).expect("bench config");
        let init = || config.init(c, &device).expect("bench layer");
        let (layer, frozen) = (init(), init().no_grad());
        let run = |layer: &normlab_norm::Norm, t| {
            layer
                .forward_sequence(t, Some(mask.clone()))
                .expect("bench input fits")
        };
        let ours = measure(&x, [&|t| run(&frozen, t), &|t| run(&layer, t)]);
        for (i, (pass, traffic)) in [("forward", 2.0), ("forward+backward", 5.0)]
            .into_iter()
            .enumerate()
        {
            rows.push(Row {
                fields: vec![
                    ("layer", format!("{config_text} masked")),
                    ("shape", format!("{:?}", [n, t, c])),
                    ("pass", pass.to_string()),
                    ("path", "composed".to_string()),
                ],
                values: vec![
                    ("normlab ms", Some(ours[i])),
                    ("burn-nn ms", None),
                    ("PyTorch ms", None),
                    ("floor ms", Some(traffic * bytes / bandwidth * 1e3)),
                ],
            });
        }
    }
}

/// A burn-nn layer twice: trainable, and with parameters that take no gradient.
fn both<M: Module>(layer: M) -> (M, M) {
    (layer.clone(), layer.no_grad())
}

fn main() {
    let bandwidth = copy_bandwidth();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let torch = pytorch(
        "crates/norm/benches/pytorch/norm_layers.py",
        &["--threads", &threads.to_string()],
    );
    let device = Device::flex().autodiff();
    device.seed(0);
    let normal = Distribution::Normal(0.0, 1.0);
    let mut rows = Vec::new();

    let conv = Tensor::<4>::random([32, 64, 32, 32], normal, &device);
    let bn = both(BurnBatchNorm::new(64).init(&device));
    // burn-nn's LayerNorm covers the last axis only: over C, H, W it is GroupNorm with 1 group.
    let ln = both(BurnGroupNorm::new(1, 64).init(&device));
    let gn = both(BurnGroupNorm::new(32, 64).init(&device));
    let inn = both(BurnInstanceNorm::new(64).init(&device));
    let bn: Layer<4> = [&|t| bn.1.forward(t), &|t| bn.0.forward(t)];
    let ln: Layer<4> = [&|t| ln.1.forward(t), &|t| ln.0.forward(t)];
    let gn: Layer<4> = [&|t| gn.1.forward(t), &|t| gn.0.forward(t)];
    let inn: Layer<4> = [&|t| inn.1.forward(t), &|t| inn.0.forward(t)];
    bench(
        &mut rows,
        &torch,
        bandwidth,
        conv,
        &[
            case("batch", r#"{"kind":"batch"}"#, "fused", Some(bn)),
            case("", r#"{"kind":"batch","ghost_batch":8}"#, "fused", None),
            case("", r#"{"kind":"batch_renorm"}"#, "fused", None),
            case("layer", r#"{"kind":"layer"}"#, "fused", Some(ln)),
            case(
                "group",
                r#"{"kind":"group","groups":32}"#,
                "fused",
                Some(gn),
            ),
            case(
                "instance",
                r#"{"kind":"instance","affine":true}"#,
                "fused",
                Some(inn),
            ),
            // burn-nn's RmsNorm covers the last axis only: no counterpart over C, H, W.
            case("rms", r#"{"kind":"rms"}"#, "fused", None),
            case("", r#"{"kind":"frn"}"#, "fused", None),
            case(
                "",
                r#"{"kind":"frn","learned_epsilon":true}"#,
                "composed",
                None,
            ),
            case("", r#"{"kind":"evonorm_s0"}"#, "composed", None),
            case("", r#"{"kind":"evonorm_b0"}"#, "composed", None),
            case("", r#"{"kind":"online"}"#, "custom op", None),
        ],
    );

    let dense = Tensor::<2>::random([256, 1024], normal, &device);
    let bn = both(BurnBatchNorm::new(1024).init(&device));
    let ln = both(BurnLayerNorm::new(1024).init(&device));
    let gn = both(BurnGroupNorm::new(32, 1024).init(&device));
    let rms = both(BurnRmsNorm::new(1024).init(&device));
    let bn: Layer<2> = [&|t| bn.1.forward(t), &|t| bn.0.forward(t)];
    let ln: Layer<2> = [&|t| ln.1.forward(t), &|t| ln.0.forward(t)];
    let gn: Layer<2> = [&|t| gn.1.forward(t), &|t| gn.0.forward(t)];
    let rms: Layer<2> = [&|t| rms.1.forward(t), &|t| rms.0.forward(t)];
    bench(
        &mut rows,
        &torch,
        bandwidth,
        dense,
        &[
            case("batch", r#"{"kind":"batch"}"#, "fused", Some(bn)),
            case("layer", r#"{"kind":"layer"}"#, "fused", Some(ln)),
            case(
                "group",
                r#"{"kind":"group","groups":32}"#,
                "fused",
                Some(gn),
            ),
            case("rms", r#"{"kind":"rms"}"#, "fused", Some(rms)),
            case("", r#"{"kind":"online"}"#, "custom op", None),
        ],
    );

    let sequences = Tensor::<3>::random([32, 64, 256], normal, &device);
    bench_masked(
        &mut rows,
        bandwidth,
        sequences,
        &[r#"{"kind":"batch"}"#, r#"{"kind":"layer"}"#],
    );

    let notes = [
        format!(
            "floor: the least memory traffic (forward 2x, forward+backward 5x the input's bytes) at \
             this machine's copy bandwidth, {:.1} GB/s (read + write).",
            bandwidth / 1e9
        ),
        "path: `fused` runs normlab's flex kernels (one pass for the statistics, one for the \
         output, a hand-written backward); `composed` runs burn tensor ops that autodiff \
         differentiates (every backend, and padded input on flex); `custom op` is Online \
         Normalization's own forward and backward."
            .to_string(),
        "burn-nn: its layer of the same kind (LayerNorm over C, H, W as GroupNorm with one group); \
         n/a where it has none."
            .to_string(),
        match torch.is_empty() {
            true => "PyTorch: not measured (no Python with torch found; set NORMLAB_PYTHON).".into(),
            false => format!(
                "PyTorch: {} on the CPU with {threads} threads, the same shapes \
                 (benches/pytorch/norm_layers.py).",
                torch_version(&torch)
            ),
        },
    ];
    finish(env!("CARGO_PKG_NAME"), "norm_layers", &rows, &notes);
}
