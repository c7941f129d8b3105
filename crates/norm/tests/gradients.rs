//! Finite-difference checks of every family's gradients.
//!
//! In f32, along random directions: `(L(x + h v) - L(x - h v)) / 2h` against `<dL/dx, v>` for the
//! input, gamma and beta. A gradient that forgets the dependence of the statistics on the input
//! is off by a large fraction; the tolerance leaves room only for f32 rounding.

mod common;

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
    if let Some((gamma, beta)) = affine
        && norm.affine().is_some()
    {
        norm.set_affine(Some(Affine::new(gamma, beta).unwrap()))
            .unwrap();
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
    check_with_beta(config, sequence, 0.0);
}

/// [`check`] with `beta` around `beta_mean`: FRN's threshold (`max(y, tau)`, `tau = 0`) has a
/// kink that a finite difference must not straddle, so FRN is checked with every output above
/// it (beta 3), where the TLU passes its input through.
fn check_with_beta(config: NormConfig, sequence: bool, beta_mean: f32) {
    let device = train_device();
    let shape = if sequence { [3, 5, 4] } else { [3, 4, 5] };
    let x = normal(shape, 1.0, 2.0, 1, &device);
    let r = normal(shape, 0.0, 1.0, 2, &device);
    let gamma = normal([4], 1.0, 0.3, 3, &device);
    let beta = normal([4], beta_mean, 0.3, 4, &device);

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

/// Every family whose gradient is the derivative of its forward. Batch renormalization treats
/// `r` and `d` as constants (the paper's choice), so once they act its gradient is not the
/// derivative of its forward: it is checked here in its warm-up, where it is batch norm, and
/// against its float64 reference (tests/reference.rs) where they act. Online Normalization's
/// gradient is its control process: see the test below.
fn families() -> Vec<NormConfig> {
    vec![
        NormConfig::Batch(BatchNormConfig::default()),
        NormConfig::Layer(LayerNormConfig::default()),
        NormConfig::Instance(InstanceNormConfig::default().with_affine(true)),
        NormConfig::Group(GroupNormConfig::new(2)),
        NormConfig::Rms(RmsNormConfig::default()),
        NormConfig::Batch(BatchNormConfig::default().with_ghost_batch(Some(2))),
        NormConfig::BatchRenorm(BatchRenormConfig::default()),
        NormConfig::EvoNormS0(EvoNormS0Config::default().with_groups(2)),
        NormConfig::EvoNormB0(EvoNormB0Config::default()),
    ]
}

fn frn_families() -> Vec<NormConfig> {
    vec![
        NormConfig::Frn(FrnConfig::default()),
        NormConfig::Frn(FrnConfig::default().with_learned_epsilon(true)),
    ]
}

#[test]
fn gradients_match_finite_differences_on_conv_input() {
    for config in families() {
        check(config, false);
    }
    for config in frn_families() {
        check_with_beta(config, false, 3.0);
    }
}

#[test]
fn gradients_match_finite_differences_on_padded_sequences() {
    for config in families() {
        check(config, true);
    }
    for config in frn_families() {
        check_with_beta(config, true, 3.0);
    }
    check(
        NormConfig::Batch(BatchNormConfig::default().with_per_step(Some(5))),
        true,
    );
}

/// Online Normalization's backward is the paper's control process, not the derivative of its
/// forward: it subtracts running projections of the gradient (decay `alpha_backward`), and it
/// ignores how a sample's output depends, through the running statistics, on the samples
/// before it. The control process itself is checked against the float64 reference of the
/// authors' algorithm (tests/reference.rs). Here the plumbing: with `alpha_backward = 1` the
/// projections vanish, and with one sample per call the earlier samples are constants, so the
/// gradient must then equal the derivative of the forward.
#[test]
fn online_norm_gradient_is_the_derivative_when_its_control_process_is_off() {
    let device = train_device();
    let config = NormConfig::Online(
        OnlineNormConfig::default()
            .with_alpha_forward(0.5)
            .with_alpha_backward(1.0),
    );
    let norm = config.init(4, &device).unwrap();
    for seed in 0..3 {
        // Stream a few samples through, backward included (the accumulators grow, but with
        // alpha_backward = 1 they must not act), then check the next one.
        let x = normal([1, 4, 6], 1.0, 2.0, 100 + seed, &device).require_grad();
        let _ = norm.forward(x).unwrap().sum().backward();
    }
    let x = normal([1, 4, 6], 1.0, 2.0, 7, &device);
    let r = normal([1, 4, 6], 0.0, 1.0, 8, &device);
    // Eval mode computes what the next training step's forward computes, without advancing
    // the stream: the forward whose derivative the gradient must be.
    let eval = norm.valid();
    let loss = |x: Tensor<3>| scalar((eval.forward(x.inner()).unwrap() * r.clone().inner()).sum());
    let xg = x.clone().require_grad();
    let grads = (norm.forward(xg.clone()).unwrap() * r.clone())
        .sum()
        .backward();
    let analytic_grad = xg.grad(&grads).unwrap();
    for seed in 10..13 {
        let v = normal([1, 4, 6], 0.0, 1.0, seed, &device);
        let numeric = (loss(x.clone() + v.clone() * STEP) - loss(x.clone() - v.clone() * STEP))
            / (2.0 * STEP);
        let analytic = scalar((analytic_grad.clone() * v.inner()).sum());
        assert_close("online d/dx", &[analytic], &[numeric], TOLERANCE);
    }
}
