//! EvoNorm-S0 on the CPU: `y = x * sigmoid(v x) / sqrt(var + epsilon) * gamma + beta`, with
//! `var` the biased variance of each (sample, group) row, as group norm takes it. The forward
//! reads a row twice (its statistics, then the gated output); the backward twice too (the gates
//! and the row's sums, then the input gradient), keeping the row's gates in a buffer between the
//! two so that each value's `exp` is computed once per pass direction.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{Centre, Dims, Real, moments, nothing, output, task_len, written};
use crate::kernel::GroupSpec;
use crate::kernel::fused::simd;

/// The forward: the output and each row's biased variance (`[N * groups]`).
pub(crate) fn evonorm_s0<T: Real>(
    x: &[T],
    [v, gamma, beta]: [&[T]; 3],
    dims: Dims,
    GroupSpec {
        groups, epsilon, ..
    }: GroupSpec,
) -> (Vec<T>, Vec<T>) {
    let rows = Rows::new(x, &[v, gamma, beta], dims, groups);
    if dims.len() == 0 {
        return (Vec::new(), vec![T::default(); rows.count]);
    }
    let mut out = output(dims.len());
    let mut var = vec![T::default(); rows.count];
    let task = task_len(rows.count, rows.len, dims.len());
    out.par_chunks_mut(rows.len * task)
        .zip(x.par_chunks(rows.len * task))
        .zip(var.par_chunks_mut(task))
        .enumerate()
        .for_each(|(t, ((out, x), var))| {
            let rows_here = out.chunks_mut(rows.len).zip(x.chunks(rows.len));
            for (r, ((out, x), var)) in rows_here.zip(var.iter_mut()).enumerate() {
                let (_, row_var) = moments(x[0], simd::shifted_sums(x, x[0]), x.len(), true);
                let rstd = 1.0 / (row_var + epsilon).sqrt();
                let segments = out.chunks_mut(dims.s).zip(x.chunks(dims.s));
                for ((out, x), c) in segments.zip(rows.channels(t * task + r)) {
                    let scale = T::from_f64(rstd * gamma[c].to_f64());
                    simd::gated_affine(out, x, [v[c], scale, beta[c]]);
                }
                *var = T::from_f64(row_var);
            }
        });
    // SAFETY: `out` and `x` have the same length (checked by `Rows::new`) and are cut into the
    // same tasks, rows and segments, and `gated_affine` writes every value it is given.
    (unsafe { written(out) }, var)
}

/// The backward from the output gradient `dy` and the forward's row variances:
/// `(dx, dv, dgamma, dbeta)`, the parameter gradients added up over the batch.
pub(crate) fn evonorm_s0_backward<T: Real>(
    x: &[T],
    dy: &[T],
    [v, gamma, var]: [&[T]; 3],
    dims: Dims,
    GroupSpec {
        groups, epsilon, ..
    }: GroupSpec,
) -> [Vec<T>; 4] {
    let rows = Rows::new(x, &[v, gamma], dims, groups);
    assert_eq!(dy.len(), x.len(), "output gradient of {dims:?}");
    assert_eq!(var.len(), rows.count, "variances of {dims:?}");
    if dims.len() == 0 {
        let (dx, dv, dgamma) = nothing(dims.c);
        return [dx, dv, dgamma, vec![T::default(); dims.c]];
    }
    let mut dx = output(dims.len());
    let task = task_len(rows.count, rows.len, dims.len());
    // Each task's `[Σ dv, Σ dgamma, Σ dbeta]` per channel, added in task order afterwards.
    let partials: Vec<Vec<[f64; 3]>> = dx
        .par_chunks_mut(rows.len * task)
        .zip(
            x.par_chunks(rows.len * task)
                .zip(dy.par_chunks(rows.len * task)),
        )
        .enumerate()
        .map(|(t, (dx, (x, dy)))| {
            let mut grads = vec![[0.0f64; 3]; dims.c];
            let mut gate = vec![T::default(); rows.len];
            let rows_here = dx
                .chunks_mut(rows.len)
                .zip(x.chunks(rows.len).zip(dy.chunks(rows.len)));
            for (r, (dx, (x, dy))) in rows_here.enumerate() {
                let row = t * task + r;
                let rstd = 1.0 / (var[row].to_f64() + epsilon).sqrt();
                let parts = RowParts {
                    v,
                    gamma,
                    channels: rows.channels(row),
                    s: dims.s,
                    rstd,
                };
                row_backward(dx, x, dy, &mut gate, parts, &mut grads);
            }
            grads
        })
        .collect();
    let mut totals = vec![[0.0f64; 3]; dims.c];
    for partial in &partials {
        for (total, sums) in totals.iter_mut().zip(partial) {
            for (t, s) in total.iter_mut().zip(sums) {
                *t += s;
            }
        }
    }
    let column = |k: usize| totals.iter().map(|t| T::from_f64(t[k])).collect();
    // SAFETY: `dx`, `x` and `dy` have the same length (checked above) and are cut into the same
    // tasks, rows and segments, and `gated_gradient` writes every value it is given.
    [unsafe { written(dx) }, column(0), column(1), column(2)]
}

/// The rows EvoNorm-S0 takes its variance over: `count` of `len` values, one per (sample,
/// group), each `channels` consecutive segments of the positions of one channel.
struct Rows {
    count: usize,
    len: usize,
    per_group: usize,
    groups: usize,
}

impl Rows {
    /// Checks `x` and the per-channel values against `dims` and `groups`.
    fn new<T>(x: &[T], per_channel: &[&[T]], dims: Dims, groups: usize) -> Self {
        dims.check(x, per_channel);
        assert!(
            groups > 0 && dims.c.is_multiple_of(groups),
            "{groups} groups of {dims:?}"
        );
        let per_group = dims.c / groups;
        Self {
            count: dims.n * groups,
            len: per_group * dims.s,
            per_group,
            groups,
        }
    }

    /// The channels of row `row`, in the order of its segments.
    fn channels(&self, row: usize) -> std::ops::Range<usize> {
        let first = (row % self.groups) * self.per_group;
        first..first + self.per_group
    }
}

/// What one row's backward needs beside its data.
struct RowParts<'a, T> {
    v: &'a [T],
    gamma: &'a [T],
    channels: std::ops::Range<usize>,
    s: usize,
    rstd: f64,
}

/// The backward of one row: with `g = dy * gamma`, `h = x * sigmoid(v x)` and `L` values,
/// `dx = g rstd dh/dx - Σ g h * rstd^3 (x - mean) / L`; adds each channel's
/// `[Σ g rstd x^2 s (1 - s), Σ dy h rstd, Σ dy]` into `grads`.
fn row_backward<T: Real>(
    dx: &mut [MaybeUninit<T>],
    x: &[T],
    dy: &[T],
    gate: &mut [T],
    parts: RowParts<'_, T>,
    grads: &mut [[f64; 3]],
) {
    let RowParts {
        v,
        gamma,
        channels,
        s,
        rstd,
    } = parts;
    let k = x[0];
    let (mut sum_g_h, mut sum_d) = (0.0, 0.0);
    let segments = x.chunks(s).zip(dy.chunks(s)).zip(gate.chunks_mut(s));
    for (((x, dy), gate), c) in segments.zip(channels.clone()) {
        simd::gates(gate, x, v[c]);
        let [sum_dy_h, sum_dy, sum_x] = simd::gated_grad_sums(dy, x, gate, k);
        sum_g_h += gamma[c].to_f64() * sum_dy_h;
        sum_d += sum_x;
        grads[c][1] += sum_dy_h * rstd;
        grads[c][2] += sum_dy;
    }
    let centre = Centre::of(k, sum_d, x.len());
    let slope = T::from_f64(sum_g_h * rstd * rstd * rstd / x.len() as f64);
    let segments = dx
        .chunks_mut(s)
        .zip(x.chunks(s).zip(dy.chunks(s)))
        .zip(gate.chunks(s));
    for (((dx, (x, dy)), gate), c) in segments.zip(channels) {
        let per_dy = rstd * gamma[c].to_f64();
        let coefficients = [v[c], T::from_f64(per_dy), centre.k, centre.r, slope];
        simd::gated_gradient(dx, x, dy, gate, coefficients);
        grads[c][0] += per_dy * simd::gate_slope_sum(dy, x, gate);
    }
}
