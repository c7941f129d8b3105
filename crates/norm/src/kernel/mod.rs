//! The computations the families are made of, behind one seam: the layers say *what* to
//! normalize over, these functions say *how*. On the flex (CPU) backend, and on burn's CubeCL
//! backends with the `wgpu` feature, for input without padding, they run fused kernels with
//! hand-written backward passes (`fused`; EvoNorm's, FRN's with its unit and batch
//! renormalization's on flex alone); elsewhere they compose burn tensor ops, which every backend
//! runs and burn differentiates. Padded (masked) input takes the composed path, but for batch
//! norm over padded rows on flex ([`masked_batch_norm_train`]).

mod fused;
mod moments;
mod online;

use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::{BatchNormTrainOutput, batch_norm, batch_norm_train};

use crate::Kernels;
use crate::affine::{Affine, apply_affine};
pub(crate) use fused::available_on_flex as fused_on_flex;
use fused::evonorm::EvoNorm;
pub(crate) use fused::renorm::Renorm;
pub(crate) use moments::{Moments, moments};
pub(crate) use online::{
    OnlineStream, StreamState, online_normalize, supported as online_supported,
};

/// The statistics of [`group_norm`], each `[N, groups, 1]`.
pub(crate) struct GroupStats {
    pub mean: Tensor<3>,
    /// Biased variance (RMS norm: the mean square).
    pub var: Tensor<3>,
    /// How many elements each statistic was taken over.
    pub count: Tensor<3>,
}

/// What group norm takes its statistics over: per sample, `groups` groups of `C / groups`
/// channels and all of `S`, centred unless `center` is false (the mean square then), with
/// `epsilon` added to them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GroupSpec {
    pub groups: usize,
    pub center: bool,
    pub epsilon: f64,
}

/// Normalizes `x: [N, C, S]` by the statistics of `spec` (dividing by the root mean square when
/// not centred), then applies `affine`, on the fused kernels where `kernels` and the backend allow. Returns the output and
/// the statistics.
///
/// Layer norm (one group), group norm, instance norm (one group per channel), RMS norm (one
/// group, not centred) and FRN (one group per channel, not centred) are this computation.
pub(crate) fn group_norm(
    x: Tensor<3>,
    weights: Option<Tensor<3>>,
    spec: GroupSpec,
    affine: Option<&Affine>,
    kernels: Kernels,
) -> (Tensor<3>, GroupStats) {
    let [_, c, s] = x.dims();
    if weights.is_none() && fused::available(&x, kernels) {
        let (gamma, beta) = affine_or_identity(affine, c, &x.device());
        let (y, mean, var) = fused::group_norm(x, gamma, beta, spec);
        let count = Tensor::full([1, 1, 1], (c / spec.groups * s) as f64, &y.device());
        return (y, GroupStats { mean, var, count });
    }
    composed_group_norm(x, weights, spec, affine)
}

/// [`group_norm`] in burn tensor ops: every backend, and padded input.
fn composed_group_norm(
    x: Tensor<3>,
    weights: Option<Tensor<3>>,
    GroupSpec {
        groups,
        center,
        epsilon,
    }: GroupSpec,
    affine: Option<&Affine>,
) -> (Tensor<3>, GroupStats) {
    let [n, c, s] = x.dims();
    let grouped = [n, groups, c / groups * s];
    let (x_hat, stats) = match center {
        true => {
            let weights = weights.map(|w| w.expand([n, c, s]).reshape(grouped));
            let stats = moments(x.reshape(grouped), weights, &[2]);
            let x_hat = stats.centered.clone() / (stats.var.clone() + epsilon).sqrt();
            (x_hat.reshape([n, c, s]), stats)
        }
        false => {
            // Each group as `[C / groups, S]`, reduced over both axes.
            let split = [n * groups, c / groups, s];
            let weights = weights.map(|w| w.expand([n, c, s]).reshape(split));
            let stats = mean_square(x.reshape(split), weights);
            let x_hat = stats.centered.clone() / (stats.var.clone() + epsilon).sqrt();
            let stats = Moments {
                centered: stats.centered.reshape(grouped),
                mean: stats.mean.reshape([n, groups, 1]),
                var: stats.var.reshape([n, groups, 1]),
                count: stats.count,
            };
            (x_hat.reshape([n, c, s]), stats)
        }
    };
    let out = apply_affine(affine, x_hat);
    let stats = GroupStats {
        mean: stats.mean,
        var: stats.var,
        count: stats.count,
    };
    (out, stats)
}

/// EvoNorm-S0 of `x: [N, C, S]`: `x * sigmoid(v x)` divided by the standard deviation of each
/// group of `spec` (always centred), then `affine`; on the fused kernel where `kernels` and the
/// backend allow, composed for padded input and elsewhere.
pub(crate) fn evonorm_s0(
    x: Tensor<3>,
    weights: Option<Tensor<3>>,
    v: Tensor<1>,
    spec: GroupSpec,
    affine: Option<&Affine>,
    kernels: Kernels,
) -> Tensor<3> {
    let [n, c, s] = x.dims();
    if weights.is_none() && fused_on_flex(&x, kernels) {
        let (gamma, beta) = affine_or_identity(affine, c, &x.device());
        return fused::evonorm::evonorm(x, [v, gamma, beta], EvoNorm::S0(spec)).0;
    }
    let grouped = [n, spec.groups, c / spec.groups * s];
    let weights = weights.map(|w| w.expand([n, c, s]).reshape(grouped));
    let stats = moments(x.clone().reshape(grouped), weights, &[2]);
    let std = (stats.var + spec.epsilon).sqrt();
    let gated = x.clone() * sigmoid(v.reshape([1, c, 1]) * x);
    let y = (gated.reshape(grouped) / std).reshape([n, c, s]);
    apply_affine(affine, y)
}

/// EvoNorm-B0 in training of `x: [N, C, S]` with every element real, on the fused kernel (call
/// only where [`fused_on_flex`]): the output, and each channel's mean and biased variance over
/// the batch and positions, `[C]`, detached, for the running statistics.
pub(crate) fn evonorm_b0_train(
    x: Tensor<3>,
    v: Tensor<1>,
    affine: Option<&Affine>,
    epsilon: f64,
) -> (Tensor<3>, Tensor<1>, Tensor<1>) {
    let c = x.dims()[1];
    let (gamma, beta) = affine_or_identity(affine, c, &x.device());
    let (y, mean, var) = fused::evonorm::evonorm(x, [v, gamma, beta], EvoNorm::B0 { epsilon });
    (y, mean.detach(), var.detach())
}

/// EvoNorm-B0 in inference of `x: [N, C, S]` with every element real, dividing the batch
/// branch by each channel's running variance `var: [C]`, on the fused kernel (call only where
/// [`fused_on_flex`]).
pub(crate) fn evonorm_b0_inference(
    x: Tensor<3>,
    v: Tensor<1>,
    var: Tensor<1>,
    affine: Option<&Affine>,
    epsilon: f64,
) -> Tensor<3> {
    let c = x.dims()[1];
    let (gamma, beta) = affine_or_identity(affine, c, &x.device());
    fused::evonorm::evonorm_b0_inference(x, [v, gamma, beta, var], epsilon)
}

/// FRN of `x: [N, C, S]` with its thresholded linear unit:
/// `max(x / sqrt(nu2 + epsilon + |eps_l|) * gamma + beta, tau)`, `nu2` the mean square of each
/// (sample, channel) over `S`, `eps_l` the learned part of the epsilon (none: 0), `gamma` and
/// `beta` those of `affine`. On the fused kernel where `kernels` and the backend allow;
/// composed for padded input and elsewhere (on group norm's kernel without a learned epsilon,
/// where there is one).
pub(crate) fn frn(
    x: Tensor<3>,
    weights: Option<Tensor<3>>,
    eps_l: Option<Tensor<1>>,
    tau: Tensor<1>,
    epsilon: f64,
    affine: Option<&Affine>,
    kernels: Kernels,
) -> Tensor<3> {
    let [n, c, s] = x.dims();
    let device = x.device();
    if weights.is_none() && fused_on_flex(&x, kernels) {
        let (gamma, beta) = affine_or_identity(affine, c, &device);
        let eps_l = eps_l.unwrap_or_else(|| Tensor::zeros([1], &device));
        return fused::frn::frn(x, [gamma, beta, tau], eps_l, epsilon);
    }
    let y = match eps_l {
        None => {
            let spec = GroupSpec {
                groups: c,
                center: false,
                epsilon,
            };
            group_norm(x, weights, spec, affine, kernels).0
        }
        Some(eps_l) => {
            let per_channel = [n * c, 1, s];
            let weights = weights.map(|w| w.expand([n, c, s]).reshape(per_channel));
            let nu2 = mean_square(x.clone().reshape(per_channel), weights)
                .var
                .reshape([n, c, 1]);
            let epsilon = eps_l.abs().reshape([1, 1, 1]) + epsilon;
            apply_affine(affine, x / (nu2 + epsilon).sqrt())
        }
    };
    // max(y, tau) as relu(y - tau) + tau, with tau expanded: burn-flex runs this form an order
    // of magnitude faster than `max_pair` or a broadcast operand, forward and backward.
    let tau = tau.reshape([1, c, 1]).expand(y.dims());
    relu(y - tau.clone()) + tau
}

/// `gamma` and `beta` of `affine`, or ones and zeros without one.
fn affine_or_identity(
    affine: Option<&Affine>,
    c: usize,
    device: &Device,
) -> (Tensor<1>, Tensor<1>) {
    match affine {
        Some(a) => (a.gamma(), a.beta()),
        None => (Tensor::ones([c], device), Tensor::zeros([c], device)),
    }
}

/// The statistics of RMS norm over the last two axes of `x: [M, K, L]`: the "variance" is the
/// mean square and nothing is subtracted.
pub(crate) fn mean_square(x: Tensor<3>, weights: Option<Tensor<3>>) -> Moments {
    let device = x.device();
    let [_, k, l] = x.dims();
    let (var, count) = match weights {
        None => (
            x.clone().square().mean_dims(&[1, 2]),
            Tensor::full([1, 1, 1], (k * l) as f64, &device),
        ),
        Some(w) => {
            let w = w.expand(x.dims());
            let count = w.clone().sum_dims(&[1, 2]).clamp_min(1.0);
            (
                (x.clone().square() * w).sum_dims(&[1, 2]) / count.clone(),
                count,
            )
        }
    };
    Moments {
        mean: var.zeros_like(),
        centered: x,
        var,
        count,
    }
}

/// Batch norm in training on `x: [N, C, S]` with every element real: normalizes each channel by
/// its mean and biased variance over `S` and the samples of each virtual batch of `ghost`
/// ([`ghost_chunks`]; all `N` without), then scales and shifts. Returns the output and the
/// statistics, `[C]` per virtual batch one after another, detached.
pub(crate) fn batch_norm_train_unmasked(
    x: Tensor<3>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    ghost: Option<usize>,
    epsilon: f64,
    kernels: Kernels,
) -> BatchNormTrainOutput<3> {
    if fused::available(&x, kernels) {
        let (output, mean, variance) = fused::batch_norm(x, gamma, beta, ghost, epsilon);
        return BatchNormTrainOutput {
            output,
            mean: mean.detach(),
            variance: variance.detach(),
        };
    }
    let [n, _, s] = x.dims();
    let chunks = ghost_chunks(n, s, ghost);
    if chunks.len() == 1 {
        return composed_batch_norm_train(x, gamma, beta, epsilon);
    }
    let mut start = 0;
    let batches: Vec<_> = chunks
        .into_iter()
        .map(|size| {
            let batch = x.clone().slice(s![start..start + size, .., ..]);
            start += size;
            composed_batch_norm_train(batch, gamma.clone(), beta.clone(), epsilon)
        })
        .collect();
    let cat_of = |part: fn(&BatchNormTrainOutput<3>) -> Tensor<1>| {
        Tensor::cat(batches.iter().map(part).collect(), 0)
    };
    BatchNormTrainOutput {
        mean: cat_of(|b| b.mean.clone()),
        variance: cat_of(|b| b.variance.clone()),
        output: Tensor::cat(batches.into_iter().map(|b| b.output).collect(), 0),
    }
}

/// Batch norm in training on `x: [R, C, 1]` (a dense batch, or the steps of padded sequences
/// as rows) over the rows whose weight in `weights: [R, 1, 1]` is 1, on the fused kernel: the
/// output (zero on the rows of weight 0), each channel's mean and biased variance (`[C]`,
/// detached), and how many rows they
/// were taken over. `None` where that kernel does not apply: `kernels` or the backend rule it
/// out, the weights differ by position or are not 0 and 1, or fewer than two rows are valid
/// (where the composed path falls back to the running statistics).
pub(crate) fn masked_batch_norm_train(
    x: Tensor<3>,
    weights: &Tensor<3>,
    [gamma, beta]: [Tensor<1>; 2],
    epsilon: f64,
    kernels: Kernels,
) -> Option<(BatchNormTrainOutput<3>, usize)> {
    let [rows, c, s] = x.dims();
    if s != 1 || weights.dims() != [rows, 1, 1] || !fused_on_flex(&x, kernels) {
        return None;
    }
    let weights: Vec<f32> = weights.clone().into_data().iter::<f32>().collect();
    if weights.iter().any(|&w| w != 0.0 && w != 1.0) {
        return None;
    }
    let valid: Arc<[bool]> = weights.iter().map(|&w| w == 1.0).collect();
    let count = valid.iter().filter(|&&v| v).count();
    if count < 2 {
        return None;
    }
    let x = x.reshape([rows, c]);
    let (y, mean, variance) = fused::masked::masked_batch_norm(x, valid, [gamma, beta], epsilon);
    let out = BatchNormTrainOutput {
        output: y.reshape([rows, c, 1]),
        mean: mean.detach(),
        variance: variance.detach(),
    };
    Some((out, count))
}

/// Batch renormalization in training of `x: [N, C, S]` with every element real, corrected
/// towards the moving mean `mu` and standard deviation `sigma` (`[C]` each), on the fused kernel:
/// the output and the batch's mean and biased variance, `[C]`, detached. `None` where `kernels`
/// or the backend rule the kernel out.
pub(crate) fn batch_renorm_train(
    x: Tensor<3>,
    affine: [Tensor<1>; 2],
    moving: [Tensor<1>; 2],
    renorm: Renorm,
    kernels: Kernels,
) -> Option<(Tensor<3>, Tensor<1>, Tensor<1>)> {
    fused_on_flex(&x, kernels).then(|| fused::renorm::batch_renorm(x, affine, moving, renorm))
}

/// The sizes of the consecutive virtual batches `n` samples of `positions` values per feature
/// are cut into: batches of `ghost` with the remainder last, joined to the one before when it
/// would hold a single value per feature. One batch of `n` without `ghost`.
pub(crate) fn ghost_chunks(n: usize, positions: usize, ghost: Option<usize>) -> Vec<usize> {
    let Some(g) = ghost.filter(|&g| g < n) else {
        return vec![n];
    };
    let mut sizes = vec![g; n / g];
    if !n.is_multiple_of(g) {
        sizes.push(n % g);
    }
    if sizes.len() > 1 && sizes[sizes.len() - 1] * positions == 1 {
        let last = sizes.pop().expect("two or more");
        *sizes.last_mut().expect("one or more") += last;
    }
    sizes
}

/// [`batch_norm_train_unmasked`] of one batch in burn tensor ops.
fn composed_batch_norm_train(
    x: Tensor<3>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> BatchNormTrainOutput<3> {
    // burn's op has a closed-form backward: one graph node instead of a dozen. Its plain
    // two-pass statistics lose digits when the mean dwarfs the spread (mean 1e4, std 1e-2 in
    // f32), so it sees the input shifted by one of its own values per channel: the output and its
    // gradient are unchanged, the data it averages is now centred.
    let [_, c, _] = x.dims();
    let shift = x.clone().slice(s![0..1, .., 0..1]).detach();
    let out = batch_norm_train(x - shift.clone(), gamma, beta, epsilon);
    BatchNormTrainOutput {
        mean: out.mean + shift.reshape([c]),
        ..out
    }
}

/// `(x - mean) / sqrt(var + epsilon) * gamma + beta` per channel of `x: [N, C, S]`, with given
/// statistics, each `[C]`: batch norm in eval.
pub(crate) fn normalize_with(
    x: Tensor<3>,
    mean: Tensor<1>,
    var: Tensor<1>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    kernels: Kernels,
) -> Tensor<3> {
    if fused::available(&x, kernels) {
        let scale = gamma / (var + epsilon).sqrt();
        return fused::channel_affine(x, mean, scale, beta);
    }
    batch_norm(x, gamma, beta, mean, var, epsilon)
}

#[cfg(test)]
mod tests;
