//! Your own burn model with a norm slot: the norm is a config value, so switching from batch norm
//! to group norm is a change of data, not of code.
//!
//! ```text
//! cargo run --release -p normlab-norm --example norm_in_your_model
//! cargo run --release -p normlab-norm --example norm_in_your_model -- '{"kind": "group", "groups": 4}'
//! ```
//!
//! It trains a small CNN for a few steps on synthetic images (the class says which quadrant is
//! bright) with each norm given on the command line (JSON, as in a config file), or with every
//! family when none is given, and prints the loss and the eval accuracy.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::relu;
use normlab_norm::{Norm, NormConfig, NormError};

const CLASSES: usize = 4;
const SIZE: usize = 16;

/// Conv -> norm -> relu, twice, then average pooling to 2 x 2 and a linear head.
#[derive(Module, Debug)]
struct SmallCnn {
    conv1: Conv2d,
    norm1: Norm,
    conv2: Conv2d,
    norm2: Norm,
    pool: AdaptiveAvgPool2d,
    head: Linear,
}

impl SmallCnn {
    fn new(norm: &NormConfig, device: &Device) -> Result<Self, NormError> {
        let conv = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device)
        };
        Ok(Self {
            conv1: conv(1, 16),
            norm1: norm.init(16, device)?,
            conv2: conv(16, 32),
            norm2: norm.init(32, device)?,
            pool: AdaptiveAvgPool2dConfig::new([2, 2]).init(),
            head: LinearConfig::new(32 * 4, CLASSES).init(device),
        })
    }

    /// `images: [N, 1, H, W]` -> logits `[N, CLASSES]`.
    fn forward(&self, images: Tensor<4>) -> Result<Tensor<2>, NormError> {
        let x = relu(self.norm1.forward(self.conv1.forward(images))?);
        let x = relu(self.norm2.forward(self.conv2.forward(x))?);
        let pooled = self.pool.forward(x).flatten::<2>(1, 3);
        Ok(self.head.forward(pooled))
    }
}

/// Noise images with one bright quadrant; the label is the quadrant.
fn synthetic_batch(n: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let labels = Tensor::<1, Int>::random([n], Distribution::Uniform(0.0, CLASSES as f64), device);
    let half = SIZE / 2;
    let mut images =
        Tensor::<4>::random([n, 1, SIZE, SIZE], Distribution::Normal(0.0, 1.0), device);
    let label_values: Vec<i64> = labels.to_data().iter::<i64>().collect();
    for (i, label) in label_values.iter().enumerate() {
        let (row, col) = ((*label as usize / 2) * half, (*label as usize % 2) * half);
        let region = s![i..i + 1, .., row..row + half, col..col + half];
        let bright = images.clone().slice(region) + 2.0;
        images = images.slice_assign(region, bright);
    }
    (images, labels)
}

fn train(norm: &NormConfig) -> Result<(f32, f32, f32), NormError> {
    let device = Device::flex();
    device.seed(42);
    let train_device = device.clone().autodiff();
    let mut model = SmallCnn::new(norm, &train_device)?;
    let mut optimizer = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&train_device);
    let mut losses = Vec::new();
    for _ in 0..40 {
        let (images, labels) = synthetic_batch(32, &train_device);
        let loss = loss_fn.forward(model.forward(images)?, labels);
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(3e-3, model, grads);
    }
    // Eval: `valid()` moves the model off autodiff; batch norm now uses its running statistics.
    let eval_model = model.valid();
    let (images, labels) = synthetic_batch(256, &device);
    let predicted = eval_model.forward(images)?.argmax(1).squeeze_dim::<1>(1);
    let accuracy = predicted.equal(labels).float().mean().into_scalar::<f32>();
    Ok((losses[0], losses[losses.len() - 1], accuracy))
}

fn main() {
    let norms: Vec<NormConfig> = match std::env::args().nth(1) {
        Some(json) => match serde_json::from_str(&json) {
            Ok(norm) => vec![norm],
            Err(err) => {
                eprintln!("not a norm config: {err}");
                std::process::exit(2);
            }
        },
        None => vec![
            NormConfig::None,
            "batch".parse().unwrap(),
            "layer".parse().unwrap(),
            serde_json::from_str(r#"{"kind": "group", "groups": 4}"#).unwrap(),
            serde_json::from_str(r#"{"kind": "instance", "affine": true}"#).unwrap(),
            "rms".parse().unwrap(),
        ],
    };
    println!(
        "{:<10} {:>11} {:>11} {:>14}",
        "norm", "first loss", "last loss", "eval accuracy"
    );
    for norm in &norms {
        match train(norm) {
            Ok((first, last, accuracy)) => {
                println!(
                    "{:<10} {first:>11.4} {last:>11.4} {:>13.1}%",
                    norm.kind(),
                    accuracy * 100.0
                )
            }
            Err(err) => {
                eprintln!("{}: {err}", norm.kind());
                std::process::exit(1);
            }
        }
    }
}
