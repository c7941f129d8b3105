//! Forward and forward+backward time of every norm layer on flex (CPU) or wgpu (GPU), beside
//! burn-nn's layer of the same kind, PyTorch's (when a Python with torch is at hand: on the CPU,
//! or on CUDA beside a GPU) and the memory floor.
//!
//! ```text
//! cargo bench -p normlab-norm --bench norm_layers
//! NORMLAB_PYTHON=/path/to/python-with-torch cargo bench -p normlab-norm --bench norm_layers
//! cargo bench -p normlab-norm --features wgpu --bench norm_layers -- --device wgpu
//! ```
//!
//! Three passes: inference (eval mode, running statistics where the layer keeps them, on the
//! device without autodiff), the forward in training mode, and forward + backward. A norm layer
//! is memory-bound: its forward must read the activation and write the output (2x the
//! activation's bytes), its backward read the input and the output gradient and write the
//! input gradient (3x more). The floor is that traffic at the device's copy bandwidth, measured
//! first; `bw %` is the share of that bandwidth a layer reaches (the floor over its time).
//! Times are medians, with the device synchronised inside each timed call; the table goes to
//! `results/benchmarks/norm_layers.md` (`norm_layers_wgpu.md` on wgpu).

// The allocator the runner uses: big buffers are reused instead of page-faulted in anew.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use burn::module::Module;
use burn::nn::{
    BatchNormConfig as BurnBatchNorm, GroupNormConfig as BurnGroupNorm,
    InstanceNormConfig as BurnInstanceNorm, LayerNormConfig as BurnLayerNorm,
    RmsNormConfig as BurnRmsNorm,
};
use burn::prelude::*;
use burn::tensor::Distribution;
use normlab_benchkit::{Backend, Row, Target};
use normlab_norm::{Kernels, NormConfig};
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

/// A layer's forward three times: in eval mode on the device without autodiff (inference),
/// with parameters that take no gradient (for the forward alone, as PyTorch's `no_grad`: a
/// graph that is never walked back would keep every activation alive), and trainable.
type Layer<'a, const D: usize> = [&'a dyn Fn(Tensor<D>) -> Tensor<D>; 3];

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

/// Median times in milliseconds of `layer` on `x`: inference (on `x` without autodiff), forward
/// in training mode, then forward + backward of the sum.
fn measure<const D: usize>(
    target: &Target,
    x: &Tensor<D>,
    [eval, frozen, trainable]: Layer<'_, D>,
) -> [f64; 3] {
    let plain = x.clone().inner();
    let inference = target.median(3, 21, || eval(plain.clone()));
    let forward = target.median(3, 21, || frozen(x.clone()));
    let backward = target.median(3, 21, || {
        let input = x.clone().require_grad();
        let grads = trainable(input.clone()).sum().backward();
        input.grad(&grads)
    });
    Target::ran(frozen(x.clone()));
    [inference, forward, backward].map(|t| t.as_secs_f64() * 1e3)
}

/// What every measurement of one sitting shares, and the rows it has made.
struct Sitting {
    target: Target,
    /// PyTorch's measurements, one JSON object each.
    torch: Vec<Value>,
    /// The device's copy bandwidth, bytes per second.
    bandwidth: f64,
    rows: Vec<Row>,
}

impl Sitting {
    /// PyTorch's time of `layer` on `shape` for `pass`, if its script measured it.
    fn pytorch_ms(&self, layer: &str, shape: &[usize], pass: &str) -> Option<f64> {
        let shape: Vec<Value> = shape.iter().map(|&d| Value::from(d)).collect();
        self.torch
            .iter()
            .find(|r| {
                r["layer"] == layer
                    && r["shape"] == Value::Array(shape.clone())
                    && r["pass"] == pass
            })
            .and_then(|r| r["ms"].as_f64())
    }

    /// Three rows (inference, forward, forward+backward) for one layer on `shape`: normlab's
    /// times `ours`,
    /// burn-nn's, PyTorch's (its script's name for the layer, if any) and the floor.
    fn push(
        &mut self,
        label: String,
        shape: &[usize],
        path: &str,
        ours: [f64; 3],
        burn: Option<[f64; 3]>,
        torch_layer: &str,
    ) {
        let bytes = (shape.iter().product::<usize>() * 4) as f64;
        let passes = [
            ("inference", 2.0),
            ("forward", 2.0),
            ("forward+backward", 5.0),
        ];
        for (i, (pass, traffic)) in passes.into_iter().enumerate() {
            let floor = traffic * bytes / self.bandwidth * 1e3;
            let row = Row {
                fields: vec![
                    ("layer", label.clone()),
                    ("shape", format!("{shape:?}")),
                    ("pass", pass.to_string()),
                    ("path", path.to_string()),
                ],
                values: vec![
                    ("normlab ms", Some(ours[i])),
                    ("burn-nn ms", burn.map(|b| b[i])),
                    ("PyTorch ms", self.pytorch_ms(torch_layer, shape, pass)),
                    ("floor ms", Some(floor)),
                    ("bw %", Some(100.0 * floor / ours[i])),
                ],
            };
            self.rows.push(row);
        }
    }

    /// Measures every case on `x`.
    fn bench<const D: usize>(&mut self, x: Tensor<D>, cases: &[Case<D>]) {
        let shape = x.dims();
        for case in cases {
            let config: NormConfig = serde_json::from_str(case.config).expect("bench config");
            let kernels = match case.path {
                "composed" => Kernels::Composed,
                _ => Kernels::Fastest,
            };
            let init = || {
                let layer = config.init(shape[1], &x.device()).expect("bench layer");
                layer.with_kernels(kernels)
            };
            let (layer, frozen, eval) = (init(), init().no_grad(), init().valid());
            let run = |layer: &normlab_norm::Norm, t| layer.forward(t).expect("bench input fits");
            let ours = measure(
                &self.target,
                &x,
                [&|t| run(&eval, t), &|t| run(&frozen, t), &|t| {
                    run(&layer, t)
                }],
            );
            let burn = case.burn.map(|f| measure(&self.target, &x, f));
            let label = case.config.to_string();
            self.push(label, &shape, case.path, ours, burn, case.layer);
        }
    }

    /// The same for padded sequences `[N, T, C]` with a mask (the last quarter of every other
    /// sequence is padding), each config with the path its statistics take; burn ops zero the
    /// padded outputs around the kernels, except batch norm's, which writes the zeros itself.
    fn bench_masked(&mut self, x: Tensor<3>, configs: &[(&'static str, &'static str)]) {
        let [n, t, c] = x.dims();
        let device = x.device();
        let lengths: Vec<i64> = (0..n)
            .map(|i| if i % 2 == 0 { t } else { t * 3 / 4 } as i64)
            .collect();
        let lengths = Tensor::<1, Int>::from_data(TensorData::new(lengths, [n]), &device);
        let steps = Tensor::<1, Int>::arange(0..t as i64, &device);
        let mask = steps.unsqueeze_dim::<2>(0).lower(lengths.unsqueeze_dim(1));
        let plain_mask = mask.clone().to_device(&device.clone().inner());
        for &(config_text, path) in configs {
            let config: NormConfig = serde_json::from_str(config_text).expect("bench config");
            let init = || config.init(c, &device).expect("bench layer");
            let (layer, frozen, eval) = (init(), init().no_grad(), init().valid());
            let run = |layer: &normlab_norm::Norm, t, mask: &Tensor<2, Bool>| {
                layer
                    .forward_sequence(t, Some(mask.clone()))
                    .expect("bench input fits")
            };
            let ours = measure(
                &self.target,
                &x,
                [
                    &|t| run(&eval, t, &plain_mask),
                    &|t| run(&frozen, t, &mask),
                    &|t| run(&layer, t, &mask),
                ],
            );
            let label = format!("{config_text} masked");
            self.push(label, &[n, t, c], path, ours, None, "");
        }
    }
}

/// A burn-nn layer three times: trainable, with parameters that take no gradient, and in
/// eval mode without autodiff.
fn all_three<M: Module>(layer: M) -> (M, M, M) {
    (layer.clone(), layer.clone().no_grad(), layer.valid())
}

/// The [`Layer`] of a triple from [`all_three`], for a case's `burn`: burn-nn's layers share
/// no trait with a `forward`, so each call site names its own.
macro_rules! burn_nn {
    ($layers:ident) => {
        Some(
            [&|t| $layers.2.forward(t), &|t| $layers.1.forward(t), &|t| {
                $layers.0.forward(t)
            }],
        )
    };
}

/// Group norm as benched on both layouts, with burn-nn's `GroupNorm` of as many groups beside it.
const GROUP_NORM: &str = r#"{"kind":"group","groups":32}"#;

/// The conv-layout cases on `[N, C, H, W]` input `x`: every family and remedy, burn-nn's
/// layers beside the five core families; on flex the remedies again on burn's composed ops,
/// which their fused kernels replace.
fn bench_conv(sitting: &mut Sitting, x: Tensor<4>) {
    let channels = x.dims()[1];
    let device = x.device();
    let bn = all_three(BurnBatchNorm::new(channels).init(&device));
    // burn-nn's LayerNorm covers the last axis only: over C, H, W it is GroupNorm with 1 group.
    let ln = all_three(BurnGroupNorm::new(1, channels).init(&device));
    let gn = all_three(BurnGroupNorm::new(32, channels).init(&device));
    let inn = all_three(BurnInstanceNorm::new(channels).init(&device));
    // EvoNorm's and FRN's learned-epsilon kernels are the CPU's alone.
    let on_flex = match sitting.target.backend() {
        Backend::Flex => "fused",
        Backend::Wgpu => "composed",
    };
    sitting.bench(
        x.clone(),
        &[
            case("batch", r#"{"kind":"batch"}"#, "fused", burn_nn!(bn)),
            case("", r#"{"kind":"batch","ghost_batch":8}"#, "fused", None),
            case("", r#"{"kind":"batch_renorm"}"#, "fused", None),
            case("layer", r#"{"kind":"layer"}"#, "fused", burn_nn!(ln)),
            case("group", GROUP_NORM, "fused", burn_nn!(gn)),
            case(
                "instance",
                r#"{"kind":"instance","affine":true}"#,
                "fused",
                burn_nn!(inn),
            ),
            // burn-nn's RmsNorm covers the last axis only: no counterpart over C, H, W.
            case("rms", r#"{"kind":"rms"}"#, "fused", None),
            case("", r#"{"kind":"frn"}"#, "fused", None),
            case(
                "",
                r#"{"kind":"frn","learned_epsilon":true}"#,
                on_flex,
                None,
            ),
            case("", r#"{"kind":"evonorm_s0"}"#, on_flex, None),
            case("", r#"{"kind":"evonorm_b0"}"#, on_flex, None),
            case("", r#"{"kind":"online"}"#, "custom op", None),
        ],
    );
    if sitting.target.backend() == Backend::Flex {
        let remedies = [
            r#"{"kind":"batch","ghost_batch":8}"#,
            r#"{"kind":"batch_renorm"}"#,
            r#"{"kind":"frn","learned_epsilon":true}"#,
            r#"{"kind":"evonorm_s0"}"#,
            r#"{"kind":"evonorm_b0"}"#,
        ];
        let composed = remedies.map(|config| case("", config, "composed", None));
        sitting.bench(x, &composed);
    }
}

fn main() -> ExitCode {
    let target = match Target::from_args() {
        Ok(target) => target,
        Err(code) => return code,
    };
    let device = target.device.clone();
    // A GPU also gets a ResNet-50 stage's activation (200 MB: more than a check run on
    // lavapipe can allocate).
    let conv_shapes: &[[usize; 4]] = match (target.backend(), target.check) {
        (Backend::Wgpu, false) => &[[32, 64, 32, 32], [64, 256, 56, 56]],
        _ => &[[32, 64, 32, 32]],
    };
    let dense_shape = [256, 1024];
    let shapes: Vec<String> = conv_shapes
        .iter()
        .map(|s| &s[..])
        .chain([&dense_shape[..]])
        .map(|s| {
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x")
        })
        .collect();
    let script = "crates/norm/benches/pytorch/norm_layers.py";
    let shape_args: Vec<&str> = shapes.iter().map(String::as_str).collect();
    let torch = target.pytorch(script, &[&["--shapes"], &shape_args[..]].concat());
    let mut sitting = Sitting {
        bandwidth: target.copy_bandwidth(),
        torch,
        target,
        rows: Vec::new(),
    };
    device.seed(0);
    let normal = Distribution::Normal(0.0, 1.0);

    for &shape in conv_shapes {
        bench_conv(&mut sitting, Tensor::<4>::random(shape, normal, &device));
    }

    let dense = Tensor::<2>::random(dense_shape, normal, &device);
    let features = dense_shape[1];
    let bn = all_three(BurnBatchNorm::new(features).init(&device));
    let ln = all_three(BurnLayerNorm::new(features).init(&device));
    let gn = all_three(BurnGroupNorm::new(32, features).init(&device));
    let rms = all_three(BurnRmsNorm::new(features).init(&device));
    sitting.bench(
        dense,
        &[
            case("batch", r#"{"kind":"batch"}"#, "fused", burn_nn!(bn)),
            case("layer", r#"{"kind":"layer"}"#, "fused", burn_nn!(ln)),
            case("group", GROUP_NORM, "fused", burn_nn!(gn)),
            case("rms", r#"{"kind":"rms"}"#, "fused", burn_nn!(rms)),
            case("", r#"{"kind":"online"}"#, "custom op", None),
        ],
    );

    let sequences = Tensor::<3>::random([32, 64, 256], normal, &device);
    // Batch norm over padded steps has a kernel on flex alone; layer norm's statistics never
    // cross steps, so padding leaves them to the fused kernels everywhere.
    let masked_batch = match sitting.target.backend() {
        Backend::Flex => "fused",
        Backend::Wgpu => "composed",
    };
    let masked = [
        (r#"{"kind":"batch"}"#, masked_batch),
        (r#"{"kind":"layer"}"#, "fused"),
    ];
    sitting.bench_masked(sequences, &masked);

    let Sitting {
        target,
        torch,
        bandwidth,
        rows,
    } = sitting;
    let kernels = match target.backend() {
        Backend::Flex => "normlab's flex kernels",
        Backend::Wgpu => "normlab's CubeCL kernels",
    };
    let notes = [
        format!(
            "pass: `inference` is eval mode (running statistics where the layer keeps them) on \
             the device without autodiff, `forward` training mode, `forward+backward` training \
             mode with the backward of the output's sum. floor: the least memory traffic \
             (inference and forward 2x, forward+backward 5x the input's bytes) at \
             the device's copy bandwidth, {:.1} GB/s (read + write, of buffers far larger than \
             the caches); bw %: the floor over normlab's time, the share of that bandwidth the \
             layer reaches. Each layer reads the same input over and over: an input that fits in \
             the last-level cache (the 8 MB conv input on many CPUs) can beat the floor, over \
             100%.",
            bandwidth / 1e9
        ),
        format!(
            "path: `fused` runs {kernels} (one pass for the statistics, one for the output, a \
             hand-written backward); `composed` runs burn tensor ops that autodiff \
             differentiates; `custom op` is Online \
             Normalization's own forward and backward. In inference the layers with running \
             statistics (batch norm, its remedies, online normalization) run one fused \
             per-channel affine map of them, burn's `batch_norm` op where composed; \
             EvoNorm-B0 its own inference kernel on flex. On flex the remedies with kernels of \
             their own run a second time composed: what those kernels replace."
        ),
        "burn-nn: its layer of the same kind (LayerNorm over C, H, W as GroupNorm with one group); \
         n/a where it has none."
            .to_string(),
        target.pytorch_note(&torch, "benches/pytorch/norm_layers.py"),
    ];
    target.finish(env!("CARGO_PKG_NAME"), "norm_layers", &rows, &notes);
    ExitCode::SUCCESS
}
