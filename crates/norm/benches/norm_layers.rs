//! Forward and forward+backward time of every norm layer beside burn-nn's layer of the same kind,
//! on flex (CPU), with the achieved memory bandwidth.
//!
//! ```text
//! cargo bench -p normlab-norm --bench norm_layers
//! ```
//!
//! A norm layer is memory-bound: its forward must read the activation and write the output (2x
//! the activation's bytes), its backward read the input and the output gradient and write the
//! input gradient (3x more). "GB/s" is that minimum traffic divided by the time; "of limit" sets
//! it against this machine's copy bandwidth, measured first. Times are medians.

use std::hint::black_box;
use std::time::{Duration, Instant};

use burn::nn::{
    BatchNormConfig as BurnBatchNorm, GroupNormConfig as BurnGroupNorm,
    InstanceNormConfig as BurnInstanceNorm, LayerNormConfig as BurnLayerNorm,
    RmsNormConfig as BurnRmsNorm,
};
use burn::prelude::*;
use burn::tensor::Distribution;
use normlab_norm::NormConfig;

const RUNS: usize = 9;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn time(mut run: impl FnMut()) -> Duration {
    run(); // warm-up: allocations, rayon threads
    median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                run();
                start.elapsed()
            })
            .collect(),
    )
}

/// Copy bandwidth (bytes read + written per second) of a buffer far larger than the caches.
fn copy_bandwidth() -> f64 {
    let source = vec![1.0f32; 64 << 20];
    let mut target = vec![0.0f32; 64 << 20];
    let elapsed = time(|| target.copy_from_slice(black_box(&source)));
    black_box(&target);
    2.0 * (source.len() * 4) as f64 / elapsed.as_secs_f64()
}

/// Times `layer` on `x`: forward in training mode, then forward + backward.
fn measure<const D: usize>(x: &Tensor<D>, layer: &dyn Fn(Tensor<D>) -> Tensor<D>) -> [Duration; 2] {
    let forward = time(|| {
        black_box(layer(x.clone()));
    });
    let backward = time(|| {
        let input = x.clone().require_grad();
        let grads = layer(input.clone()).sum().backward();
        black_box(input.grad(&grads));
    });
    [forward, backward]
}

struct Row {
    layer: &'static str,
    shape: String,
    ours: [Duration; 2],
    burn: Option<[Duration; 2]>,
    bytes: usize,
}

fn bench<const D: usize>(
    rows: &mut Vec<Row>,
    layer: &'static str,
    x: Tensor<D>,
    config: &str,
    burn: Option<&dyn Fn(Tensor<D>) -> Tensor<D>>,
) {
    let features = x.dims()[1];
    let config: NormConfig = serde_json::from_str(config).expect("bench config");
    let ours = config.init(features, &x.device()).expect("bench layer");
    let ours = measure(&x, &|t| ours.forward(t).expect("bench input fits"));
    let burn = burn.map(|f| measure(&x, f));
    rows.push(Row {
        layer,
        shape: format!("{:?}", x.dims()),
        ours,
        burn,
        bytes: x.shape().num_elements() * 4,
    });
}

fn main() {
    let limit = copy_bandwidth();
    let device = Device::flex().autodiff();
    let conv = Tensor::<4>::random([32, 64, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let dense = Tensor::<2>::random([256, 1024], Distribution::Normal(0.0, 1.0), &device);
    let mut rows = Vec::new();

    let bn_conv = BurnBatchNorm::new(64).init(&device);
    bench(
        &mut rows,
        "batch",
        conv.clone(),
        r#"{"kind":"batch"}"#,
        Some(&|t| bn_conv.forward(t)),
    );
    let bn_dense = BurnBatchNorm::new(1024).init(&device);
    bench(
        &mut rows,
        "batch",
        dense.clone(),
        r#"{"kind":"batch"}"#,
        Some(&|t| bn_dense.forward(t)),
    );

    // burn-nn's LayerNorm covers the last axis only: over C, H, W it is GroupNorm with 1 group.
    let ln_conv = BurnGroupNorm::new(1, 64).init(&device);
    bench(
        &mut rows,
        "layer",
        conv.clone(),
        r#"{"kind":"layer"}"#,
        Some(&|t| ln_conv.forward(t)),
    );
    let ln_dense = BurnLayerNorm::new(1024).init(&device);
    bench(
        &mut rows,
        "layer",
        dense.clone(),
        r#"{"kind":"layer"}"#,
        Some(&|t| ln_dense.forward(t)),
    );

    let gn_conv = BurnGroupNorm::new(32, 64).init(&device);
    let group = r#"{"kind":"group","groups":32}"#;
    bench(
        &mut rows,
        "group",
        conv.clone(),
        group,
        Some(&|t| gn_conv.forward(t)),
    );
    let gn_dense = BurnGroupNorm::new(32, 1024).init(&device);
    bench(
        &mut rows,
        "group",
        dense.clone(),
        group,
        Some(&|t| gn_dense.forward(t)),
    );

    let in_conv = BurnInstanceNorm::new(64).init(&device);
    let instance = r#"{"kind":"instance","affine":true}"#;
    bench(
        &mut rows,
        "instance",
        conv.clone(),
        instance,
        Some(&|t| in_conv.forward(t)),
    );

    // burn-nn's RmsNorm covers the last axis only: no counterpart over C, H, W.
    bench(&mut rows, "rms", conv, r#"{"kind":"rms"}"#, None);
    let rms_dense = BurnRmsNorm::new(1024).init(&device);
    bench(
        &mut rows,
        "rms",
        dense,
        r#"{"kind":"rms"}"#,
        Some(&|t| rms_dense.forward(t)),
    );

    println!(
        "flex on {} threads; copy bandwidth {:.1} GB/s (read + write)\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        limit / 1e9
    );
    println!(
        "{:<9} {:<18} {:<17} {:>11} {:>11} {:>7} {:>8} {:>9}",
        "layer", "shape", "pass", "normlab ms", "burn-nn ms", "ratio", "GB/s", "of limit"
    );
    for row in rows {
        for (pass, index, traffic) in [("forward", 0, 2), ("forward+backward", 1, 5)] {
            let ours = row.ours[index].as_secs_f64();
            let gbps = (traffic * row.bytes) as f64 / ours;
            let (burn_ms, ratio) = match row.burn {
                Some(burn) => {
                    let burn = burn[index].as_secs_f64();
                    (format!("{:.2}", burn * 1e3), format!("{:.2}", ours / burn))
                }
                None => ("n/a".into(), "n/a".into()),
            };
            println!(
                "{:<9} {:<18} {:<17} {:>11.2} {:>11} {:>7} {:>8.1} {:>8.0}%",
                row.layer,
                row.shape,
                pass,
                ours * 1e3,
                burn_ms,
                ratio,
                gbps / 1e9,
                100.0 * gbps / limit
            );
        }
    }
    println!("\nratio = normlab time / burn-nn time (below 1: normlab is faster)");
}
