//! EvoNorm-S0 and -B0 on the CPU, each forward reading its input twice (the statistics, then
//! the output) and each backward twice (the sums its gradients need, then the input gradient).
//!
//! S0: `y = x * sigmoid(v x) / sqrt(var + epsilon) * gamma + beta`, with `var` the biased
//! variance of each (sample, group) row, as group norm takes it; the backward keeps a row's
//! gates in a buffer between its two passes, so that each value's `exp` is computed once.
//!
//! B0: `y = x / max(sqrt(var_B + epsilon), v x + sqrt(var_I + epsilon)) * gamma + beta`, `var_B`
//! per channel over the batch in training, the running variance in inference (one pass: each
//! segment's instance variance is taken just before its output), `var_I` per (sample, channel).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{Centre, Dims, Real, Rows, moments, nothing, output, task_len, written};
use crate::kernel::GroupSpec;
use crate::kernel::fused::simd;

/// EvoNorm-S0's forward: the output and each row's mean and biased variance (`[N * groups]`).
pub(crate) fn evonorm_s0<T: Real>(
    x: &[T],
    [v, gamma, beta]: [&[T]; 3],
    dims: Dims,
    GroupSpec {
        groups, epsilon, ..
    }: GroupSpec,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let rows = Rows::new(x, &[v, gamma, beta], dims, groups);
    if dims.len() == 0 {
        return nothing(rows.count);
    }
    let mut out = output(dims.len());
    let mut stats = vec![(T::default(), T::default()); rows.count];
    let task = task_len(rows.count, rows.len, dims.len());
    out.par_chunks_mut(rows.len * task)
        .zip(x.par_chunks(rows.len * task))
        .zip(stats.par_chunks_mut(task))
        .enumerate()
        .for_each(|(t, ((out, x), stats))| {
            let rows_here = out.chunks_mut(rows.len).zip(x.chunks(rows.len));
            for (r, ((out, x), stat)) in rows_here.zip(stats.iter_mut()).enumerate() {
                let sums = simd::shifted_sums(x, x[0]);
                let (centre, row_var) = moments(x[0], sums, x.len(), true);
                let rstd = 1.0 / (row_var + epsilon).sqrt();
                let segments = out.chunks_mut(dims.s).zip(x.chunks(dims.s));
                for ((out, x), c) in segments.zip(rows.channels(t * task + r)) {
                    let scale = T::from_f64(rstd * gamma[c].to_f64());
                    simd::gated_affine(out, x, [v[c], scale, beta[c]]);
                }
                *stat = (T::from_f64(centre.mean()), T::from_f64(row_var));
            }
        });
    let (mean, var) = stats.into_iter().unzip();
    // SAFETY: `out` and `x` have the same length (checked by `Rows::new`) and are cut into the
    // same tasks, rows and segments, and `gated_affine` writes every value it is given.
    (unsafe { written(out) }, mean, var)
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
        let [sum_dy_h, sum_dy, sum_x, slope_sum] = simd::gated_grad_sums(dy, x, gate, k);
        sum_g_h += gamma[c].to_f64() * sum_dy_h;
        sum_d += sum_x;
        grads[c][0] += rstd * gamma[c].to_f64() * slope_sum;
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
    }
}

/// Each segment's instance statistics and each channel's batch statistics, from one pass over
/// `x`. A segment's values are shifted by its first, so that the instance statistics of a
/// segment of one value are exactly its value and zero (its variance's gradient is then exactly
/// zero, as it must be); the batch sums are the segments' moved to one shift per channel, its
/// first segment's, in `f64`, and added in sample order.
struct B0Stats<T> {
    segments: Vec<SegmentSums<T>>,
}

/// A segment `(n, c)`'s first value `k` and `[Σ (x - k), Σ (x - k)^2]` about it.
type SegmentSums<T> = (T, [f64; 2]);

impl<T: Real> B0Stats<T> {
    fn of(x: &[T], dims: Dims) -> Self {
        let segments = x.par_chunks(dims.s).map(Self::segment).collect();
        Self { segments }
    }

    /// One segment's first value and its sums about it.
    fn segment(x: &[T]) -> SegmentSums<T> {
        (x[0], simd::shifted_sums(x, x[0]))
    }

    /// The centre and biased variance of a segment from its [`segment`](Self::segment) sums.
    fn moments((k, sums): SegmentSums<T>, dims: Dims) -> (Centre<T>, f64) {
        moments(k, sums, dims.s, true)
    }

    /// The centre and biased variance of segment `segment` (over its `S` positions).
    fn instance(&self, segment: usize, dims: Dims) -> (Centre<T>, f64) {
        Self::moments(self.segments[segment], dims)
    }

    /// The centre and biased variance of channel `c` over the batch and the positions.
    fn batch(&self, c: usize, dims: Dims) -> (Centre<T>, f64) {
        let k = self.segments[c].0;
        let s = dims.s as f64;
        let mut sums = [0.0f64; 2];
        for n in 0..dims.n {
            let (k_n, [sum, sum_sq]) = self.segments[n * dims.c + c];
            // Σ (x - k) = Σ (x - k_n) + S δ and Σ (x - k)^2 = Σ (x - k_n)^2 + 2 δ Σ (x - k_n)
            // + S δ^2, with δ = k_n - k.
            let delta = k_n.to_f64() - k.to_f64();
            sums[0] += sum + s * delta;
            sums[1] += sum_sq + 2.0 * delta * sum + s * delta * delta;
        }
        moments(k, sums, dims.n * dims.s, true)
    }
}

/// EvoNorm-B0's forward in training (see the module doc): `var_B` each channel's biased
/// variance over the batch and positions, `var_I` each (sample, channel)'s over its positions.
/// Returns `y` and each channel's batch mean and biased variance (for the running statistics).
pub(crate) fn evonorm_b0<T: Real>(
    x: &[T],
    [v, gamma, beta]: [&[T]; 3],
    dims: Dims,
    epsilon: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    dims.check(x, &[v, gamma, beta]);
    if dims.len() == 0 {
        return nothing(dims.c);
    }
    let stats = B0Stats::of(x, dims);
    let batch: Vec<(Centre<T>, f64)> = (0..dims.c).map(|c| stats.batch(c, dims)).collect();
    let batch_std: Vec<T> = batch
        .iter()
        .map(|&(_, var)| T::from_f64((var + epsilon).sqrt()))
        .collect();
    let out = b0_output(x, [v, gamma, beta], &batch_std, dims, |segment, _| {
        T::from_f64((stats.instance(segment, dims).1 + epsilon).sqrt())
    });
    let mean = batch
        .iter()
        .map(|(centre, _)| T::from_f64(centre.mean()))
        .collect();
    let var = batch.iter().map(|&(_, var)| T::from_f64(var)).collect();
    (out, mean, var)
}

/// EvoNorm-B0's forward in inference (see the module doc): the batch branch divides by
/// `sqrt(var + epsilon)` with `var` each channel's running variance.
pub(crate) fn evonorm_b0_inference<T: Real>(
    x: &[T],
    [v, gamma, beta, var]: [&[T]; 4],
    dims: Dims,
    epsilon: f64,
) -> Vec<T> {
    dims.check(x, &[v, gamma, beta, var]);
    if dims.len() == 0 {
        return Vec::new();
    }
    let running_std: Vec<T> = var
        .iter()
        .map(|var| T::from_f64((var.to_f64() + epsilon).sqrt()))
        .collect();
    b0_output(x, [v, gamma, beta], &running_std, dims, |_, x| {
        let (_, instance_var) = B0Stats::moments(B0Stats::segment(x), dims);
        T::from_f64((instance_var + epsilon).sqrt())
    })
}

/// EvoNorm-B0's output, segment by segment in parallel tasks: `batch_std` per channel, and
/// `instance_std(segment, x)` of each segment's index and values.
fn b0_output<T: Real>(
    x: &[T],
    [v, gamma, beta]: [&[T]; 3],
    batch_std: &[T],
    dims: Dims,
    instance_std: impl Fn(usize, &[T]) -> T + Sync,
) -> Vec<T> {
    let mut out = output(dims.len());
    let task = task_len(dims.n * dims.c, dims.s, dims.len());
    out.par_chunks_mut(dims.s * task)
        .zip(x.par_chunks(dims.s * task))
        .enumerate()
        .for_each(|(t, (out, x))| {
            let segments = out.chunks_mut(dims.s).zip(x.chunks(dims.s));
            for (r, (out, x)) in segments.enumerate() {
                let segment = t * task + r;
                let c = segment % dims.c;
                let b = instance_std(segment, x);
                simd::b0_affine(out, x, [batch_std[c], v[c], b, gamma[c], beta[c]]);
            }
        });
    // SAFETY: `out` has `x`'s length (`dims.len()`, checked by the callers) and both are cut
    // into the same tasks and segments, and `b0_affine` writes every value it is given.
    unsafe { written(out) }
}

/// Where EvoNorm-B0's batch branch takes its variance from, as its backward sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum B0Variance {
    /// The batch's own (training): the gradient reaches `x` through it too.
    Batch,
    /// The running variance (inference): a constant.
    Running,
}

/// EvoNorm-B0's backward from the output gradient `dy` and the variances `var` its forward
/// divided by, as `variance` says: `(dx, dv, dgamma, dbeta)`, the parameter gradients added up
/// over the batch.
pub(crate) fn evonorm_b0_backward<T: Real>(
    x: &[T],
    dy: &[T],
    [v, gamma, var]: [&[T]; 3],
    dims: Dims,
    epsilon: f64,
    variance: B0Variance,
) -> [Vec<T>; 4] {
    dims.check(x, &[v, gamma, var]);
    assert_eq!(dy.len(), x.len(), "output gradient of {dims:?}");
    if dims.len() == 0 {
        let (dx, dv, dgamma) = nothing(dims.c);
        return [dx, dv, dgamma, vec![T::default(); dims.c]];
    }
    let a: Vec<f64> = var.iter().map(|v| (v.to_f64() + epsilon).sqrt()).collect();
    let coefficients = |segment: usize, instance_std: f64| {
        let c = segment % dims.c;
        [T::from_f64(a[c]), v[c], T::from_f64(instance_std), gamma[c]]
    };
    // One pass over memory: each segment's instance sums, then, from the cache, its gradient
    // sums [Σ q batch branch, Σ q other, Σ q x other, Σ dy x / d, Σ dy].
    let (segments, sums): (Vec<SegmentSums<T>>, Vec<[f64; 5]>) = x
        .par_chunks(dims.s)
        .zip(dy.par_chunks(dims.s))
        .enumerate()
        .map(|(segment, (x, dy))| {
            let stats = B0Stats::segment(x);
            let instance_std = (B0Stats::moments(stats, dims).1 + epsilon).sqrt();
            let sums = simd::b0_grad_sums(dy, x, coefficients(segment, instance_std));
            (stats, sums)
        })
        .unzip();
    let stats = B0Stats { segments };
    let instance_std = |segment: usize| (stats.instance(segment, dims).1 + epsilon).sqrt();
    let mut totals = vec![[0.0f64; 5]; dims.c];
    for (segment, sums) in sums.iter().enumerate() {
        for (total, sum) in totals[segment % dims.c].iter_mut().zip(sums) {
            *total += sum;
        }
    }
    // Per channel, `[mean_b, slope_b]` of the gradient through the batch variance: none
    // through a running one.
    let batch_count = (dims.n * dims.s) as f64;
    let through_batch: Vec<[T; 2]> = (0..dims.c)
        .map(|c| match variance {
            B0Variance::Batch => [
                T::from_f64(stats.batch(c, dims).0.mean()),
                T::from_f64(totals[c][0] / (a[c] * batch_count)),
            ],
            B0Variance::Running => [T::default(); 2],
        })
        .collect();
    let mut dx = output(dims.len());
    let task = task_len(dims.n * dims.c, dims.s, dims.len());
    dx.par_chunks_mut(dims.s * task)
        .zip(
            x.par_chunks(dims.s * task)
                .zip(dy.par_chunks(dims.s * task)),
        )
        .enumerate()
        .for_each(|(t, (dx, (x, dy)))| {
            let segments = dx
                .chunks_mut(dims.s)
                .zip(x.chunks(dims.s).zip(dy.chunks(dims.s)));
            for (r, (dx, (x, dy))) in segments.enumerate() {
                let segment = t * task + r;
                let c = segment % dims.c;
                let (centre, _) = stats.instance(segment, dims);
                // d var / d x = 2 (x - mean) / count, and d std / d var = 1 / (2 std).
                let slope_i = sums[segment][1] / (instance_std(segment) * dims.s as f64);
                let [a, v, b, gamma] = coefficients(segment, instance_std(segment));
                let [mean_b, slope_b] = through_batch[c];
                let slope_i = T::from_f64(slope_i);
                let all = [a, v, b, gamma, centre.k, centre.r, slope_i, mean_b, slope_b];
                simd::b0_gradient(dx, x, dy, all);
            }
        });
    let column = |k: usize| totals.iter().map(|t| T::from_f64(t[k])).collect();
    // SAFETY: `dx`, `x` and `dy` have the same length (checked above) and are cut into the same
    // tasks and segments, and `b0_gradient` writes every value it is given.
    [unsafe { written(dx) }, column(2), column(3), column(4)]
}
