//! Which computations give the same bits on every CPU: each one runs on fixed inputs and
//! prints a hash of its output's bits. Run it on two machines (or natively and under
//! `qemu-x86_64 -cpu Haswell`, an AVX2 CPU without AVX-512: `scripts/cross-cpu.sh`) and compare
//! the lines: a line that differs names an operation whose result depends on the CPU.
//!
//! `cargo run -p normlab-model --example cpu_fingerprint`

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, sigmoid, softmax};
use burn::tensor::{Int, TensorData};
use normlab_model::{Input, InputShape, ModelConfig, Network, conv2d};
use normlab_norm::NormConfig;
// Values from their index alone: the same on every machine.
use normlab_testkit::values;

/// FNV-1a over the bits of every value.
fn hash<const D: usize>(t: Tensor<D>) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for v in t.into_data().iter::<f32>() {
        for byte in v.to_bits().to_le_bytes() {
            h = (h ^ u64::from(byte)).wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

fn main() {
    let device = Device::flex();
    let train = device.clone().autodiff();
    let mut lines: Vec<(&str, String)> = Vec::new();

    // burn's matrix products (gemm): inner sizes below and above gemm's 512-value blocks.
    let a = values([64, 64], 1, &device);
    let product = a.matmul(values([64, 64], 2, &device));
    lines.push(("matmul 64x64 by 64x64", hash(product)));
    let x = values([64, 784], 3, &device);
    let product = x.matmul(values([784, 256], 4, &device));
    lines.push(("matmul 64x784 by 784x256", hash(product)));
    // burn's reductions and element-wise maps.
    let wide = values([64, 1000], 5, &device);
    lines.push(("sum of 64000 values", hash(wide.clone().sum())));
    lines.push(("mean of rows of 1000", hash(wide.clone().mean_dim(1))));
    lines.push(("exp", hash(wide.clone().exp())));
    lines.push(("tanh", hash(wide.clone().tanh())));
    lines.push(("sigmoid", hash(sigmoid(wide))));
    let logits = values([64, 10], 6, &device);
    lines.push(("softmax", hash(softmax(logits.clone(), 1))));
    lines.push(("log_softmax", hash(log_softmax(logits.clone(), 1))));
    let labels: Vec<i64> = (0..64).map(|i| i % 10).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [64]), &device);
    let cross_entropy = CrossEntropyLossConfig::new().init(&device);
    lines.push((
        "cross-entropy",
        hash(cross_entropy.forward(logits, targets.clone())),
    ));

    // normlab's fused norm kernels, forward and input gradient.
    for (name, config, shape) in [
        (
            "batch norm [32, 64, 8, 8]",
            "kind = \"batch\"",
            [32, 64, 8, 8],
        ),
        ("layer norm [64, 256]", "kind = \"layer\"", [64, 256, 1, 1]),
        (
            "group norm [8, 32, 17, 17]",
            "kind = \"group\"\ngroups = 8",
            [8, 32, 17, 17],
        ),
    ] {
        let config: NormConfig = toml::from_str(config).unwrap();
        let norm = config.init(shape[1], &train).unwrap();
        let x = values(shape, 7, &train).require_grad();
        let y = norm.forward(x.clone()).unwrap();
        let grads = (y.clone() * values(shape, 8, &train)).sum().backward();
        let input_grad = hash(x.grad(&grads).unwrap());
        lines.push((name, format!("{} {input_grad}", hash(y.inner()))));
    }

    // normlab's convolution kernel, forward and backward.
    let x = values([8, 3, 16, 16], 9, &train).require_grad();
    let w = values([16, 3, 3, 3], 10, &train).require_grad();
    let y = conv2d(x.clone(), w.clone(), None, [1, 1], [1, 1]);
    let grads = (y.clone() * values([8, 16, 16, 16], 11, &train))
        .sum()
        .backward();
    let (dx, dw) = (x.grad(&grads).unwrap(), w.grad(&grads).unwrap());
    let conv = format!("{} {} {}", hash(y.inner()), hash(dx), hash(dw));
    lines.push(("conv2d [8, 3, 16, 16] to 16 channels", conv));

    // Five Adam steps of an MLP with batch norm on 784 inputs, as in the online experiment.
    let config = "kind = \"mlp\"\nhidden = [256, 256]\nnorm = { kind = \"batch\" }";
    let config: ModelConfig = toml::from_str(config).unwrap();
    train.seed(0);
    let mut model = config.init(InputShape::Features(784), 10, &train).unwrap();
    let mut optimizer = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&train);
    for step in 0..5 {
        let input = Input::Features(values([64, 784], 12 + step, &train));
        let logits = model.forward(input).unwrap();
        let loss = loss_fn.forward(logits, targets.clone().to_device(&train));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-3, model, grads);
    }
    let input = Input::Features(values([64, 784], 99, &device));
    let logits = model.valid().forward(input).unwrap();
    lines.push(("5 Adam steps of a 784-256-256-10 MLP", hash(logits)));

    for (name, hash) in lines {
        println!("{name}: {hash}");
    }
}
