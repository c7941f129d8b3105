//! The fused kernels against the composed burn ops they replace, on shapes the reference
//! files do not reach: rows longer than a vector block, tails that are not a whole vector,
//! tensors large enough to be split into parallel tasks, dense rows (one position per channel)
//! of odd widths, many groups. Output, statistics and the gradients of input, `gamma` and
//! `beta` must agree to f32 rounding. On flex by default; on wgpu, the CubeCL kernels, with
//! `NORMLAB_TEST_DEVICE=wgpu` and the `wgpu` feature (as the integration tests, tests/common).

use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::module::batch_norm;

use super::*;

/// The device under test, with autodiff.
fn device() -> Device {
    normlab_testkit::train_device()
}

/// Largest difference relative to the largest composed value.
const TOLERANCE: f32 = 2e-5;

/// `[N, C, S]` shapes: one position per channel (dense), short odd segments, a segment longer
/// than a vector block, and tensors above the kernels' parallel threshold.
const SHAPES: [[usize; 3]; 8] = [
    [3, 5, 1],
    [7, 13, 1],
    [64, 1030, 1],
    [2, 6, 3],
    [5, 4, 37],
    [3, 8, 1027],
    [16, 32, 257],
    [32, 64, 64],
];

fn relative_error<const D: usize>(what: &str, got: Tensor<D>, want: Tensor<D>) {
    let error = normlab_testkit::max_relative_error(got, want, 1e-6);
    assert!(error <= TOLERANCE, "{what}: off by {error:e}");
}

/// Seeds burn's process-wide random numbers with `seed` for `shape` and makes `draw` with them,
/// holding a lock: the tests of this binary run on several threads, and another's seed or draw
/// in between would change the inputs. Some shapes' inputs matter: FRN's input gradient over
/// one position per channel is a difference of near-equal terms where every `|x|` is large.
fn seeded<T>(shape: [usize; 3], device: &Device, draw: impl FnOnce() -> T) -> T {
    static RANDOM_NUMBERS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = RANDOM_NUMBERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    device.seed(shape.iter().product::<usize>() as u64);
    draw()
}

/// Random input with a per-channel offset, so that centring matters.
fn input(shape: [usize; 3], device: &Device) -> Tensor<3> {
    let x = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let offset = Tensor::<1>::random([shape[1]], Distribution::Uniform(-3.0, 3.0), device);
    x + offset.reshape([1, shape[1], 1])
}

/// Runs `op` on fresh leaves `(x, gamma, beta)` and returns its output, its extra outputs and
/// the three gradients of `Σ y * dy`.
fn run(
    x: &Tensor<3>,
    params: [&Tensor<1>; 2],
    dy: &Tensor<3>,
    op: impl Fn(Tensor<3>, Tensor<1>, Tensor<1>) -> (Tensor<3>, Vec<Tensor<3>>),
) -> (Tensor<3>, Vec<Tensor<3>>, [Tensor<3>; 3]) {
    let x = x.clone().require_grad();
    let [gamma, beta] = params.map(|p| p.clone().require_grad());
    let (y, stats) = op(x.clone(), gamma.clone(), beta.clone());
    let grads = (y.clone() * dy.clone()).sum().backward();
    let as_3d = |t: Tensor<1>| t.reshape([1, 1, -1]);
    let grads = [
        x.grad(&grads).expect("input gradient"),
        as_3d(gamma.grad(&grads).expect("gamma gradient")),
        as_3d(beta.grad(&grads).expect("beta gradient")),
    ];
    (
        y.inner(),
        stats.into_iter().map(Tensor::inner).collect(),
        grads,
    )
}

fn compare(
    name: &str,
    shape: [usize; 3],
    fused: impl Fn(Tensor<3>, Tensor<1>, Tensor<1>) -> (Tensor<3>, Vec<Tensor<3>>),
    composed: impl Fn(Tensor<3>, Tensor<1>, Tensor<1>) -> (Tensor<3>, Vec<Tensor<3>>),
) {
    let device = device();
    let (x, gamma, beta, dy) = seeded(shape, &device, || {
        (
            input(shape, &device),
            Tensor::<1>::random([shape[1]], Distribution::Uniform(0.5, 1.5), &device),
            Tensor::<1>::random([shape[1]], Distribution::Normal(0.0, 1.0), &device),
            Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device),
        )
    });
    let ours = run(&x, [&gamma, &beta], &dy, fused);
    let theirs = run(&x, [&gamma, &beta], &dy, composed);
    let at = format!("{name} on {shape:?}");
    relative_error(&format!("{at}: output"), ours.0, theirs.0);
    for (i, (got, want)) in ours.1.into_iter().zip(theirs.1).enumerate() {
        relative_error(&format!("{at}: statistic {i}"), got, want);
    }
    let names = ["input gradient", "gamma gradient", "beta gradient"];
    for ((what, got), want) in names.iter().zip(ours.2).zip(theirs.2) {
        relative_error(&format!("{at}: {what}"), got, want);
    }
}

#[test]
fn group_norm_kernels_match_the_composed_ops() {
    for shape in SHAPES {
        let c = shape[1];
        let divisors = [
            1,
            c,
            (1..=c)
                .rev()
                .find(|g| c % g == 0 && *g < c && *g > 1)
                .unwrap_or(1),
        ];
        // Groups of a single value have no variance: the layers refuse them.
        for groups in divisors.into_iter().filter(|g| c / g * shape[2] >= 2) {
            for center in [true, false] {
                let name = format!("group norm, {groups} groups, centred {center}");
                let op = |composed: bool| {
                    move |x: Tensor<3>, gamma: Tensor<1>, beta: Tensor<1>| {
                        let affine = Affine::new(gamma, beta).expect("affine");
                        let spec = GroupSpec {
                            groups,
                            center,
                            epsilon: 1e-5,
                        };
                        let (y, stats) = match composed {
                            true => composed_group_norm(x, None, spec, Some(&affine)),
                            false => group_norm(x, None, spec, Some(&affine), Kernels::Fastest),
                        };
                        (y, vec![stats.mean, stats.var])
                    }
                };
                compare(&name, shape, op(false), op(true));
            }
        }
    }
}

#[test]
fn batch_norm_kernels_match_the_composed_ops() {
    let as_3d = |t: Tensor<1>| t.reshape([1, 1, -1]);
    for shape in SHAPES {
        let op = |composed: bool| {
            move |x: Tensor<3>, gamma: Tensor<1>, beta: Tensor<1>| {
                let out = match composed {
                    true => composed_batch_norm_train(x, gamma, beta, 1e-5),
                    false => {
                        batch_norm_train_unmasked(x, gamma, beta, None, 1e-5, Kernels::Fastest)
                    }
                };
                (out.output, vec![as_3d(out.mean), as_3d(out.variance)])
            }
        };
        compare("batch norm in training", shape, op(false), op(true));

        let eval = |composed: bool| {
            move |x: Tensor<3>, gamma: Tensor<1>, beta: Tensor<1>| {
                let c = x.dims()[1];
                let device = x.device();
                let mean = Tensor::<1>::from_data(
                    TensorData::new((0..c).map(|i| i as f32 * 0.1 - 1.0).collect(), [c]),
                    &device,
                );
                let var = mean.clone().abs() + 0.5;
                let y = match composed {
                    true => batch_norm(x, gamma, beta, mean, var, 1e-5),
                    false => normalize_with(x, mean, var, gamma, beta, 1e-5, Kernels::Fastest),
                };
                (y, Vec::new())
            }
        };
        compare("batch norm in eval", shape, eval(false), eval(true));
    }
}

#[test]
fn composed_kernels_take_the_composed_path() {
    let device = device();
    let x = input([16, 32, 257], &device);
    let values = |t: Tensor<3>| t.into_data().iter::<f32>().collect::<Vec<f32>>();
    let spec = GroupSpec {
        groups: 4,
        center: true,
        epsilon: 1e-5,
    };
    let run = |kernels| values(group_norm(x.clone(), None, spec, None, kernels).0);
    let composed = values(composed_group_norm(x.clone(), None, spec, None).0);
    let fused = run(Kernels::Fastest);
    // The kernels sum in another order: some outputs differ in their last bits.
    assert_ne!(fused, composed);
    assert_eq!(run(Kernels::Composed), composed);
}

/// What the EvoNorm tests compare, in the order their runs return them.
const EVONORM_OUTPUTS: [&str; 5] = [
    "output",
    "input gradient",
    "v gradient",
    "gamma gradient",
    "beta gradient",
];

#[test]
fn evonorm_s0_kernel_matches_the_composed_ops() {
    for shape in SHAPES {
        let c = shape[1];
        let groups = (1..=c).rev().find(|g| c % g == 0 && c / g >= 2 && *g <= 8);
        // A group of a single value has no variance: the layer refuses it.
        for groups in [Some(1), groups].into_iter().flatten() {
            let device = device();
            let parameter =
                |low, high| Tensor::<1>::random([c], Distribution::Uniform(low, high), &device);
            let (x, dy, params) = seeded(shape, &device, || {
                let x = input(shape, &device);
                let dy = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
                let params = [
                    parameter(-2.0, 2.0),
                    parameter(0.5, 1.5),
                    parameter(-1.0, 1.0),
                ];
                (x, dy, params)
            });
            let spec = GroupSpec {
                groups,
                center: true,
                epsilon: 1e-5,
            };
            let run = |kernels| {
                let x = x.clone().require_grad();
                let [v, gamma, beta] = params.clone().map(|p| p.require_grad());
                let affine = Affine::new(gamma.clone(), beta.clone()).expect("affine");
                let y = evonorm_s0(x.clone(), None, v.clone(), spec, Some(&affine), kernels);
                let grads = (y.clone() * dy.clone()).sum().backward();
                let as_3d = |t: Tensor<1>| t.reshape([1, 1, -1]);
                let grad = |p: &Tensor<1>| as_3d(p.grad(&grads).expect("parameter gradient"));
                let x_grad = x.grad(&grads).expect("input gradient");
                [y.inner(), x_grad, grad(&v), grad(&gamma), grad(&beta)]
            };
            let fused = run(Kernels::Fastest);
            let composed = run(Kernels::Composed);
            for ((what, got), want) in EVONORM_OUTPUTS.iter().zip(fused).zip(composed) {
                relative_error(
                    &format!("EvoNorm-S0, {groups} groups, on {shape:?}: {what}"),
                    got,
                    want,
                );
            }
        }
    }
}

/// On every shape, what `run` gives (named tensors) with the fused kernels and with the
/// composed ops agrees; `run` gets the kernels, the shape, an input and an output gradient.
fn compare_kernels(
    what: &str,
    run: impl Fn(Kernels, [usize; 3], &Tensor<3>, &Tensor<3>) -> Vec<(&'static str, Tensor<3>)>,
) {
    for shape in SHAPES {
        let device = device();
        let (x, dy) = seeded(shape, &device, || {
            let x = input(shape, &device);
            (
                x,
                Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device),
            )
        });
        let fused = run(Kernels::Fastest, shape, &x, &dy);
        let composed = run(Kernels::Composed, shape, &x, &dy);
        for ((name, got), (_, want)) in fused.into_iter().zip(composed) {
            relative_error(&format!("{what} on {shape:?}: {name}"), got, want);
        }
    }
}

/// One training step of a layer built from `config`, with the fused kernels and with the
/// composed ops, on every shape: the output, the input gradient and what `read` takes from the
/// layer and the gradients afterwards (named) agree.
fn compare_layer_kernels(
    what: &str,
    config: &crate::NormConfig,
    read: impl Fn(&crate::Norm, &burn::tensor::Gradients) -> Vec<(&'static str, Tensor<3>)>,
) {
    compare_kernels(what, |kernels, shape, x, dy| {
        let norm = config.init(shape[1], &x.device()).expect("layer");
        let norm = norm.with_kernels(kernels);
        let x = x.clone().require_grad();
        let y = norm.forward(x.clone()).expect("fits");
        let grads = (y.clone() * dy.clone()).sum().backward();
        let input_grad = x.grad(&grads).expect("input gradient");
        let mut out = vec![("output", y.inner()), ("input gradient", input_grad)];
        out.extend(read(&norm, &grads));
        out
    });
}

/// The gradient of a `[C]` parameter, as `[1, 1, C]`.
fn parameter_grad(parameter: Tensor<1>, grads: &burn::tensor::Gradients) -> Tensor<3> {
    let grad = parameter.grad(grads).expect("parameter gradient");
    grad.reshape([1, 1, -1])
}

#[test]
fn evonorm_b0_kernel_matches_the_composed_layer_in_training() {
    use crate::family::AsFamily;
    use crate::{EvoNormB0Config, Norm, NormConfig};
    // `v` starts at 1: `x + sqrt(var_I + eps)` beats `sqrt(var_B + eps)` for about the values
    // above their channel's mean, so both branches of the max are taken.
    let config = NormConfig::EvoNormB0(EvoNormB0Config::default());
    compare_layer_kernels("EvoNorm-B0", &config, |norm, grads| {
        let Norm::EvoNormB0(layer) = norm else {
            unreachable!("an EvoNorm-B0 config")
        };
        let affine = norm.family().affine().expect("affine");
        let running = norm.family().running_stats().expect("running statistics");
        let per_channel = |t: Tensor<2>| t.reshape([1, 1, -1]).inner();
        vec![
            ("v gradient", parameter_grad(layer.v(), grads)),
            ("gamma gradient", parameter_grad(affine.gamma(), grads)),
            ("beta gradient", parameter_grad(affine.beta(), grads)),
            ("running mean", per_channel(running.mean())),
            ("running variance", per_channel(running.var())),
        ]
    });
}

#[test]
fn evonorm_b0_kernel_matches_the_composed_layer_in_inference() {
    use crate::{EvoNormB0Config, NormConfig};
    let config = NormConfig::EvoNormB0(EvoNormB0Config::default());
    compare_kernels("EvoNorm-B0 in inference", |kernels, shape, x, dy| {
        let norm = config.init(shape[1], &x.device()).expect("layer");
        let norm = norm.with_kernels(kernels);
        // A training step on a wider input: running variances above one, so that each branch
        // of the max is taken.
        norm.forward(x.clone() * 3.0).expect("fits");
        let eval = norm.valid().forward(x.clone().inner()).expect("fits");
        // Frozen: in eval mode on the autodiff device, where the input takes a gradient.
        let frozen = norm.freeze();
        let input = x.clone().require_grad();
        let y = frozen.forward(input.clone()).expect("fits");
        let grads = (y.clone() * dy.clone()).sum().backward();
        let input_grad = input.grad(&grads).expect("input gradient");
        vec![
            ("eval output", eval),
            ("frozen output", y.inner()),
            ("input gradient", input_grad),
        ]
    });
}

#[test]
fn frn_learned_epsilon_kernel_matches_the_composed_layer() {
    use crate::family::AsFamily;
    use crate::{FrnConfig, Norm, NormConfig};
    let config = NormConfig::Frn(FrnConfig::default().with_learned_epsilon(true));
    compare_layer_kernels("FRN, learned epsilon", &config, |norm, grads| {
        let Norm::Frn(layer) = norm else {
            unreachable!("an FRN config")
        };
        let affine = norm.family().affine().expect("affine");
        let learned = layer.learned_epsilon().expect("a learned epsilon");
        vec![
            ("gamma gradient", parameter_grad(affine.gamma(), grads)),
            ("beta gradient", parameter_grad(affine.beta(), grads)),
            ("learned epsilon gradient", parameter_grad(learned, grads)),
        ]
    });
}
