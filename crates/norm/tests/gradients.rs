//! Finite-difference checks of every family's gradients.
//!
//! In f32, along random directions: `(L(x + h v) - L(x - h v)) / 2h` against `<dL/dx, v>` for the
//! input, gamma and beta. A gradient that forgets the dependence of the statistics on the input
//! is off by a large fraction; the tolerance leaves room only for f32 rounding.

mod common;

use burn::module::Param;
use burn::prelude::*;
use normlab_norm::*;

use common::*;

const STEP: f32 = 1e-2;
const TOLERANCE: f32 = 2e-3;

/// The loss `sum(norm(x) * r)` of a layer whose `gamma`/`beta` are replaced by `gamma`/`beta`.
fn loss(
    config: &NormConfig,
    sequence: bool,
    x: Tensor<3>,
    affine: Option<(Tensor<1>, Tensor<1>)>,
    r: &Tensor<3>,
) -> Tensor<1> {
    let device = x.device();
    let mut norm = config.init(4, &device).unwrap();
    if let Some((gamma, beta)) = affine {
        let slot = norm.affine_mut();
        if let Some(slot) = slot {
            *slot = Some(Affine {
                gamma: Param::from_tensor(gamma),
                beta: Param::from_tensor(beta),
            });
        }
    }
    let y = if sequence {
        let mask = prefix_mask(&[5, 3, 4], 5, &device);
        norm.forward_sequence(x, Some(mask)).unwrap()
    } else {
        norm.forward(x).unwrap()
    };
    (y * r.clone()).sum()
}

fn scalar(t: Tensor<1>) -> f32 {
    values(t)[0]
}

fn check(config: NormConfig, sequence: bool) {
    let device = train_device();
    let shape = if sequence { [3, 5, 4] } else { [3, 4, 5] };
    let x = normal(shape, 1.0, 2.0, 1, &device);
    let r = normal(shape, 0.0, 1.0, 2, &device);
    let gamma = normal([4], 1.0, 0.3, 3, &device);
    let beta = normal([4], 0.0, 0.3, 4, &device);

    let xg = x.clone().require_grad();
    let (gg, bg) = (gamma.clone().require_grad(), beta.clone().require_grad());
    let grads = loss(
        &config,
        sequence,
        xg.clone(),
        Some((gg.clone(), bg.clone())),
        &r,
    )
    .backward();
    let affine = |g: Tensor<1>, b: Tensor<1>| Some((g, b));

    for seed in 10..13 {
        let v = normal(shape, 0.0, 1.0, seed, &device);
        let numeric = (scalar(loss(
            &config,
            sequence,
            x.clone() + v.clone() * STEP,
            affine(gamma.clone(), beta.clone()),
            &r,
        )) - scalar(loss(
            &config,
            sequence,
            x.clone() - v.clone() * STEP,
            affine(gamma.clone(), beta.clone()),
            &r,
        ))) / (2.0 * STEP);
        let analytic = scalar((xg.grad(&grads).unwrap() * v.inner()).sum());
        assert_close(
            &format!("{config:?} (sequence: {sequence}) d/dx"),
            &[analytic],
            &[numeric],
            TOLERANCE,
        );
    }
    let Some(g_gamma) = gg.grad(&grads) else {
        return;
    };
    let g_beta = bg.grad(&grads).unwrap();
    let v = normal([4], 0.0, 1.0, 20, &device);
    for (name, grad, plus, minus) in [
        (
            "gamma",
            g_gamma,
            affine(gamma.clone() + v.clone() * STEP, beta.clone()),
            affine(gamma.clone() - v.clone() * STEP, beta.clone()),
        ),
        (
            "beta",
            g_beta,
            affine(gamma.clone(), beta.clone() + v.clone() * STEP),
            affine(gamma.clone(), beta.clone() - v.clone() * STEP),
        ),
    ] {
        let numeric = (scalar(loss(&config, sequence, x.clone(), plus, &r))
            - scalar(loss(&config, sequence, x.clone(), minus, &r)))
            / (2.0 * STEP);
        let analytic = scalar((grad * v.clone().inner()).sum());
        assert_close(
            &format!("{config:?} (sequence: {sequence}) d/d{name}"),
            &[analytic],
            &[numeric],
            TOLERANCE,
        );
    }
}

fn families() -> Vec<NormConfig> {
    vec![
        NormConfig::Batch(BatchNormConfig::default()),
        NormConfig::Layer(LayerNormConfig::default()),
        NormConfig::Instance(InstanceNormConfig::default().with_affine(true)),
        NormConfig::Group(GroupNormConfig::new(2)),
        NormConfig::Rms(RmsNormConfig::default()),
    ]
}

#[test]
fn gradients_match_finite_differences_on_conv_input() {
    for config in families() {
        check(config, false);
    }
}

#[test]
fn gradients_match_finite_differences_on_padded_sequences() {
    for config in families() {
        check(config, true);
    }
    check(
        NormConfig::Batch(BatchNormConfig::default().with_per_step(Some(5))),
        true,
    );
}
