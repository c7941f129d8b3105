//! FRN with its thresholded linear unit on the CPU (Singh & Krishnan 2020), one (sample,
//! channel) row of `S` positions at a time: `y = max(x rstd gamma + beta, tau)` with
//! `rstd = (nu2 + epsilon)^(-1/2)`, `nu2` the row's mean square and `epsilon` the fixed one
//! plus `|eps_l|` where it is learned. The forward reads a row once for `nu2` and once to write
//! it; the backward reads `x` and `dy` once for the sums a row needs and once for its gradient.
//!
//! With `g = dy` where the unit passes its input and 0 where `tau` holds it:
//! `dx = gamma rstd g - gamma rstd^3 x Σ g x / S`, `dgamma = Σ g x rstd`, `dbeta = Σ g`,
//! `dtau = Σ (dy - g)`, and `d epsilon = Σ_rows -rstd^3 / 2 gamma Σ g x`.

use rayon::prelude::*;

use super::{Dims, Real, output, task_len, written};
use crate::kernel::fused::simd;

/// The forward: the output, and `nu2` of every row, `[N * C]`.
pub(crate) fn frn<T: Real>(
    x: &[T],
    [gamma, beta, tau]: [&[T]; 3],
    dims: Dims,
    epsilon: f64,
) -> (Vec<T>, Vec<T>) {
    dims.check(x, &[gamma, beta, tau]);
    let (rows, s) = (dims.n * dims.c, dims.s);
    if dims.len() == 0 {
        return (Vec::new(), vec![T::default(); rows]);
    }
    let mut out = output(dims.len());
    let mut nu2 = vec![T::default(); rows];
    let task = task_len(rows, s, dims.len());
    out.par_chunks_mut(s * task)
        .zip(x.par_chunks(s * task))
        .zip(nu2.par_chunks_mut(task))
        .enumerate()
        .for_each(|(t, ((out, x), nu2))| {
            let rows_here = out.chunks_mut(s).zip(x.chunks(s)).zip(nu2.iter_mut());
            for (r, ((out, x), nu2)) in rows_here.enumerate() {
                let channel = (t * task + r) % dims.c;
                let [_, sum_sq] = simd::shifted_sums(x, T::default());
                let mean_sq = sum_sq / s as f64;
                let scale = T::from_f64(gamma[channel].to_f64() / (mean_sq + epsilon).sqrt());
                simd::affine_floor(out, x, [scale, beta[channel], tau[channel]]);
                *nu2 = T::from_f64(mean_sq);
            }
        });
    // SAFETY: `out` and `x` have the same length (checked above) and are cut into the same
    // tasks and rows, and `affine_floor` writes every value of the row it is given.
    (unsafe { written(out) }, nu2)
}

/// The gradients of [`frn`] from the output gradient `dy` and the `nu2` it returned:
/// `dx`, `[dgamma, dbeta, dtau]` and the gradient of the epsilon (of `|eps_l|`).
pub(crate) fn frn_backward<T: Real>(
    x: &[T],
    dy: &[T],
    [gamma, beta, tau, nu2]: [&[T]; 4],
    dims: Dims,
    epsilon: f64,
) -> (Vec<T>, [Vec<T>; 3], f64) {
    dims.check(x, &[gamma, beta, tau]);
    assert_eq!(dy.len(), x.len(), "output gradient of {dims:?}");
    let (rows, s) = (dims.n * dims.c, dims.s);
    assert_eq!(nu2.len(), rows, "mean squares of {dims:?}");
    let zeros = || vec![T::default(); dims.c];
    if dims.len() == 0 {
        return (Vec::new(), [zeros(), zeros(), zeros()], 0.0);
    }
    let mut dx = output(dims.len());
    let task = task_len(rows, s, dims.len());
    // Each task's `[dgamma, dbeta, dtau]` per channel and its share of the epsilon's gradient,
    // added in task order afterwards.
    let partials: Vec<(Vec<[f64; 3]>, f64)> = dx
        .par_chunks_mut(s * task)
        .zip(x.par_chunks(s * task).zip(dy.par_chunks(s * task)))
        .enumerate()
        .map(|(t, (dx, (x, dy)))| {
            let mut sums = vec![[0.0f64; 3]; dims.c];
            let mut d_epsilon = 0.0;
            let rows_here = dx.chunks_mut(s).zip(x.chunks(s).zip(dy.chunks(s)));
            for (r, (dx, (x, dy))) in rows_here.enumerate() {
                let row = t * task + r;
                let channel = row % dims.c;
                let rstd = 1.0 / (nu2[row].to_f64() + epsilon).sqrt();
                let g = gamma[channel].to_f64();
                let scale = T::from_f64(g * rstd);
                let unit = [scale, beta[channel], tau[channel]];
                let [sum_g, sum_g_x, sum_dy] = simd::floor_grad_sums(dy, x, unit);
                let slope = T::from_f64(-g * rstd * rstd * rstd * sum_g_x / s as f64);
                let [scale, shift, floor] = unit;
                simd::floor_gradient(dx, x, dy, [scale, shift, floor, scale, slope]);
                let channel_sums = &mut sums[channel];
                for (total, value) in
                    channel_sums
                        .iter_mut()
                        .zip([rstd * sum_g_x, sum_g, sum_dy - sum_g])
                {
                    *total += value;
                }
                d_epsilon += -0.5 * rstd * rstd * rstd * g * sum_g_x;
            }
            (sums, d_epsilon)
        })
        .collect();
    let mut totals = vec![[0.0f64; 3]; dims.c];
    let mut d_epsilon = 0.0;
    for (sums, share) in &partials {
        for (total, sums) in totals.iter_mut().zip(sums) {
            for (total, value) in total.iter_mut().zip(sums) {
                *total += value;
            }
        }
        d_epsilon += share;
    }
    let grads = [0, 1, 2].map(|k| totals.iter().map(|sums| T::from_f64(sums[k])).collect());
    // SAFETY: `dx`, `x` and `dy` have the same length (checked above) and are cut into the
    // same tasks and rows, and `floor_gradient` writes every value of the row it is given.
    (unsafe { written(dx) }, grads, d_epsilon)
}
