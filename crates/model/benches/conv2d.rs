//! normlab's 2-D convolution beside burn's own on flex (CPU): forward, and forward + backward
//! (input, weight and bias gradients), on the experiment networks' layers and on larger ones.
//!
//! ```text
//! cargo bench -p normlab-model --bench conv2d
//! ```
//!
//! Times are medians; the table goes to `results/benchmarks/conv2d.md`.

// The allocator the runner uses: big buffers are reused instead of page-faulted in anew.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use normlab_benchkit::{Row, finish, median};
use normlab_model::conv2d;

/// One convolution: input shape, output channels, kernel, stride.
const LAYERS: [([usize; 4], usize, usize, usize); 8] = [
    ([64, 1, 28, 28], 8, 3, 1),
    ([64, 8, 14, 14], 16, 3, 1),
    ([64, 16, 7, 7], 32, 3, 1),
    ([32, 16, 32, 32], 16, 3, 1),
    ([32, 32, 16, 16], 64, 3, 2),
    ([32, 64, 16, 16], 64, 3, 1),
    ([32, 64, 8, 8], 128, 1, 1),
    ([8, 128, 8, 8], 128, 3, 1),
];

fn main() {
    let device = Device::flex().autodiff();
    device.seed(0);
    let mut rows = Vec::new();
    for (shape, c_out, kernel, stride) in LAYERS {
        let x = Tensor::<4>::random(shape, Distribution::Default, &device);
        let pad = kernel / 2;
        let config = Conv2dConfig::new([shape[1], c_out], [kernel; 2])
            .with_stride([stride; 2])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad));
        let conv = config.init(&device);
        // A module of its own: a clone made `no_grad` before its lazy parameters are first
        // read would share them, and the trained module would lose its weight gradients.
        let frozen = config.init(&device).no_grad();
        let ours = |x: Tensor<4>, conv: &Conv2d| {
            let bias = conv.bias.as_ref().map(|b| b.val());
            conv2d(x, conv.weight.val(), bias, [stride; 2], [pad; 2])
        };
        let time = |f: &dyn Fn(Tensor<4>) -> Tensor<4>,
                    frozen_f: &dyn Fn(Tensor<4>) -> Tensor<4>| {
            let forward = median(2, 15, || {
                black_box(frozen_f(x.clone()));
            });
            let backward = median(2, 15, || {
                let input = x.clone().require_grad();
                let grads = f(input.clone()).sum().backward();
                black_box(input.grad(&grads));
            });
            [forward, backward].map(|t| t.as_secs_f64() * 1e3)
        };
        let ours_t = time(&|x| ours(x, &conv), &|x| ours(x, &frozen));
        let burn_t = time(&|x| conv.forward(x), &|x| frozen.forward(x));
        for (i, pass) in ["forward", "forward+backward"].into_iter().enumerate() {
            rows.push(Row {
                fields: vec![
                    ("input", format!("{shape:?}")),
                    ("out", c_out.to_string()),
                    ("kernel", format!("{kernel}x{kernel}/{stride}")),
                    ("pass", pass.to_string()),
                ],
                values: vec![
                    ("normlab ms", Some(ours_t[i])),
                    ("burn ms", Some(burn_t[i])),
                    ("ratio", Some(ours_t[i] / burn_t[i])),
                ],
            });
        }
    }
    finish(
        env!("CARGO_PKG_NAME"),
        "conv2d",
        &rows,
        &["ratio: normlab time / burn time (below 1: normlab faster).".to_string()],
    );
}
