//! The fused norm kernels on the CPU, over contiguous slices of `x: [N, C, S]`.
//!
//! Each kernel reads its input once for the statistics and once to write its output, in tasks
//! that rayon spreads over the cores, and accumulates in `f64` (from blocks of `f32` lanes that
//! the compiler vectorizes) after shifting by one value of the data, so that a large mean does
//! not eat the variance's digits. Every reduction has a fixed order that depends on the shape
//! alone, so results do not depend on the number of threads or on scheduling.

mod evonorm;
mod frn;
mod masked;
mod renorm;

use std::mem::{ManuallyDrop, MaybeUninit};

use macerator::{Simd, with_simd};
use rayon::prelude::*;

use super::simd::{self, Lanes};
use crate::kernel::GroupSpec;
pub(crate) use evonorm::{
    B0Variance, evonorm_b0, evonorm_b0_backward, evonorm_b0_inference, evonorm_s0,
    evonorm_s0_backward,
};
pub(crate) use frn::{frn, frn_backward};
pub(crate) use masked::{masked_batch_norm, masked_batch_norm_backward};
pub(crate) use renorm::{batch_renorm, batch_renorm_backward};

/// The float types the kernels run on.
pub(crate) trait Real: Lanes + Send + Sync + bytemuck::Pod + 'static {
    fn from_f64(value: f64) -> Self;
}

impl Real for f32 {
    fn from_f64(value: f64) -> Self {
        value as f32
    }
}

impl Real for f64 {
    fn from_f64(value: f64) -> Self {
        value
    }
}

/// An output buffer of `len` values, not initialized: the kernels write every value exactly
/// once, and [`written`] hands it out. Zeroing first would cost a pass over memory (a third of
/// a forward), and reused allocations need none.
fn output<T>(len: usize) -> Vec<MaybeUninit<T>> {
    let mut out = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` values need no initialization.
    unsafe { out.set_len(len) };
    out
}

/// The buffer of [`output`] once every value is written.
///
/// # Safety
/// Every element of `out` must have been written.
unsafe fn written<T>(out: Vec<MaybeUninit<T>>) -> Vec<T> {
    let mut out = ManuallyDrop::new(out);
    // SAFETY: `MaybeUninit<T>` has `T`'s layout, and the caller vouches that every value is
    // initialized; the allocation is handed over whole.
    unsafe { Vec::from_raw_parts(out.as_mut_ptr().cast::<T>(), out.len(), out.capacity()) }
}

/// Below this many elements a kernel runs on one thread: spreading tiny tensors costs more
/// than it saves.
const PARALLEL_MIN: usize = 1 << 15;

/// Where a set of values is centred, kept as one of its values `k` plus the (small) residual
/// `r = mean - k`, so that `(x - k) - r` loses none of the digits that `x - mean` would when the
/// mean dwarfs the spread. Not centred (RMS norm): `k = r = 0`.
#[derive(Debug, Clone, Copy)]
struct Centre<T> {
    k: T,
    r: T,
}

impl<T: Real> Centre<T> {
    fn none() -> Self {
        Self {
            k: T::default(),
            r: T::default(),
        }
    }

    /// The centre of values with `sum = Σ (x - k)` over `count` of them.
    fn of(k: T, sum: f64, count: usize) -> Self {
        Self {
            k,
            r: T::from_f64(sum / count as f64),
        }
    }

    fn mean(self) -> f64 {
        self.k.to_f64() + self.r.to_f64()
    }

    /// The offset of a map `((x - k) - r) * slope + offset` with the residual folded in: the
    /// offset of `(x - k) * slope`.
    fn folded(self, offset: f64, slope: f64) -> T {
        T::from_f64(offset - self.r.to_f64() * slope)
    }
}

/// The centre and biased variance (not centred: the mean square) of values with shifted sums
/// `[Σ (x - k), Σ (x - k)^2]` over `count` of them.
fn moments<T: Real>(k: T, [sum, sum_sq]: [f64; 2], count: usize, center: bool) -> (Centre<T>, f64) {
    let n = count as f64;
    match center {
        true => {
            let residual = sum / n;
            (
                Centre::of(k, sum, count),
                (sum_sq / n - residual * residual).max(0.0),
            )
        }
        false => (Centre::none(), sum_sq / n),
    }
}

/// How many items of `unit` elements each a rayon task takes, or all of them when the tensor
/// is small.
fn task_len(len: usize, unit: usize, total: usize) -> usize {
    match total < PARALLEL_MIN {
        true => len.max(1),
        false => (PARALLEL_MIN / unit.max(1)).clamp(1, len.max(1)),
    }
}

/// The shape of a normalization: `n` samples of `c` channels of `s` positions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    pub n: usize,
    pub c: usize,
    pub s: usize,
}

impl Dims {
    fn len(self) -> usize {
        self.n * self.c * self.s
    }

    /// Checks that `x` holds the `N * C * S` values of these dims and each per-channel
    /// parameter one value per channel. The kernels write their outputs by walking `x`, so
    /// this is what makes every output value written before [`written`] hands it out.
    fn check(self, x: &[impl Sized], per_channel: &[&[impl Sized]]) {
        assert_eq!(x.len(), self.len(), "input of {self:?}");
        for values in per_channel {
            assert_eq!(values.len(), self.c, "per-channel values of {self:?}");
        }
    }
}

/// The rows of group norm (and EvoNorm-S0): `count` of `len` values, one per (sample, group),
/// each `per_group` consecutive segments of the positions of one channel.
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

/// The outputs of a kernel over no values: no output, and `stats` zeros per statistic (a sum
/// over nothing; the mean and variance of nothing are taken as 0 too).
fn nothing<T: Real>(stats: usize) -> (Vec<T>, Vec<T>, Vec<T>) {
    (
        Vec::new(),
        vec![T::default(); stats],
        vec![T::default(); stats],
    )
}

/// Group norm's forward (layer norm: one group; instance norm: one group per channel; RMS norm:
/// one group, not centred): each row of `c / groups * s` values, one (sample, group), is
/// normalized by its own mean and variance, then scaled and shifted per channel. Returns the
/// output and the mean and biased variance (RMS norm: 0 and the mean square) of every row.
pub(crate) fn group_norm<T: Real>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    dims: Dims,
    spec: GroupSpec,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let rows = Rows::new(x, &[gamma, beta], dims, spec.groups);
    let (row, center) = (rows.len, spec.center);
    if dims.len() == 0 {
        return nothing(rows.count);
    }
    let mut out = output(dims.len());
    let mut stats = vec![(T::default(), T::default()); rows.count];
    let task = task_len(rows.count, row, dims.len());
    out.par_chunks_mut(row * task)
        .zip(x.par_chunks(row * task))
        .zip(stats.par_chunks_mut(task))
        .enumerate()
        .for_each(|(t, ((out, x), stats))| {
            let rows_here = out.chunks_mut(row).zip(x.chunks(row)).zip(stats.iter_mut());
            for (r, ((out, x), stat)) in rows_here.enumerate() {
                let k = if center { x[0] } else { T::default() };
                let (centre, var) = moments(k, simd::shifted_sums(x, k), row, center);
                let rstd = 1.0 / (var + spec.epsilon).sqrt();
                let channels = rows.channels(t * task + r);
                let (gamma, beta) = (&gamma[channels.clone()], &beta[channels]);
                if dims.s == 1 {
                    // One value per channel (dense input): element by element.
                    let coefficients = [centre.k, centre.r, T::from_f64(rstd)];
                    simd::normalize_each(out, x, coefficients, gamma, beta);
                } else {
                    let segments = out.chunks_mut(dims.s).zip(x.chunks(dims.s));
                    for (j, (out, x)) in segments.enumerate() {
                        let scale = T::from_f64(rstd * gamma[j].to_f64());
                        simd::affine(out, x, [centre.k, centre.r, scale, beta[j]]);
                    }
                }
                *stat = (T::from_f64(centre.mean()), T::from_f64(var));
            }
        });
    let (mean, var) = stats.into_iter().unzip();
    // SAFETY: `out` and `x` have the same length (checked above) and are cut into the same
    // tasks and rows, and `normalize_each` and `affine` write every value of the row they are
    // given.
    (unsafe { written(out) }, mean, var)
}

/// Group norm's backward: the input gradient
/// `dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat))` with `g = dy * gamma` and the means over
/// each row (without the `mean(g)` term when not centred), and the parameter gradients
/// `dgamma = Σ dy * x_hat`, `dbeta = Σ dy` per channel. The row's centre is recomputed exactly
/// from `x` in the same pass; `var` comes from the forward.
#[allow(clippy::too_many_arguments)]
pub(crate) fn group_norm_backward<T: Real>(
    x: &[T],
    dy: &[T],
    gamma: &[T],
    var: &[T],
    dims: Dims,
    spec: GroupSpec,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let rows = Rows::new(x, &[gamma], dims, spec.groups);
    let row = rows.len;
    assert_eq!(dy.len(), x.len(), "output gradient of {dims:?}");
    assert_eq!(var.len(), rows.count, "variances of {dims:?}");
    if dims.len() == 0 {
        return nothing(dims.c);
    }
    let mut dx = output(dims.len());
    let task = task_len(rows.count, row, dims.len());
    // Each task's `(Σ dy, Σ dy * x_hat)` per channel, summed in task order afterwards.
    let partials: Vec<Vec<(f64, f64)>> = dx
        .par_chunks_mut(row * task)
        .zip(x.par_chunks(row * task).zip(dy.par_chunks(row * task)))
        .enumerate()
        .map(|(t, (dx, (x, dy)))| {
            let mut grads = ParamGrads::new(dims);
            let rows_here = dx.chunks_mut(row).zip(x.chunks(row).zip(dy.chunks(row)));
            for (r, (dx, (x, dy))) in rows_here.enumerate() {
                let index = t * task + r;
                let parts = RowParts {
                    gamma,
                    channels: rows.channels(index),
                    s: dims.s,
                    center: spec.center,
                    rstd: 1.0 / (var[index].to_f64() + spec.epsilon).sqrt(),
                };
                row_backward(dx, x, dy, parts, &mut grads);
            }
            grads.totals()
        })
        .collect();
    let (mut dgamma, mut dbeta) = (vec![0.0f64; dims.c], vec![0.0f64; dims.c]);
    for partial in &partials {
        for ((dg, db), &(sum_dy, sum_dy_x_hat)) in dgamma.iter_mut().zip(&mut dbeta).zip(partial) {
            *db += sum_dy;
            *dg += sum_dy_x_hat;
        }
    }
    let to = |v: Vec<f64>| v.into_iter().map(T::from_f64).collect();
    // SAFETY: `dx`, `x` and `dy` have the same length (checked above) and are cut into the
    // same tasks and rows, and `row_backward` writes every value of its row through
    // `gradient`, which writes every value it is given.
    (unsafe { written(dx) }, to(dgamma), to(dbeta))
}

/// What one row's backward needs beside its data: `gamma`, the channels the row covers, the
/// positions per channel, and the row's statistics.
struct RowParts<'a, T> {
    gamma: &'a [T],
    channels: std::ops::Range<usize>,
    s: usize,
    center: bool,
    rstd: f64,
}

/// One task's parameter-gradient sums per channel, `(Σ dy, Σ dy * x_hat)`. Rows with several
/// positions per channel add their segments' `f64` sums; dense rows (one value per channel)
/// add in `T`, vectorized across channels, into `dense`, which joins the totals at the end of
/// the task.
struct ParamGrads<T> {
    sums: Vec<(f64, f64)>,
    dense: [Vec<T>; 2],
    /// A dense row's `dy * gamma`.
    scaled_dy: Vec<T>,
}

impl<T: Real> ParamGrads<T> {
    fn new(dims: Dims) -> Self {
        let dense_width = if dims.s == 1 { dims.c } else { 0 };
        Self {
            sums: vec![(0.0, 0.0); dims.c],
            dense: std::array::from_fn(|_| vec![T::default(); dense_width]),
            scaled_dy: Vec::new(),
        }
    }

    fn totals(mut self) -> Vec<(f64, f64)> {
        let [sum_dy, sum_dy_x_hat] = &self.dense;
        for ((sums, &a), &b) in self.sums.iter_mut().zip(sum_dy).zip(sum_dy_x_hat) {
            sums.0 += a.to_f64();
            sums.1 += b.to_f64();
        }
        self.sums
    }
}

/// The backward of one row of group norm: writes `dx` and adds each channel's
/// `(Σ dy, Σ dy * x_hat)` into `grads`.
#[inline]
fn row_backward<T: Real>(
    dx: &mut [MaybeUninit<T>],
    x: &[T],
    dy: &[T],
    parts: RowParts<'_, T>,
    grads: &mut ParamGrads<T>,
) {
    let RowParts {
        gamma,
        channels,
        s,
        center,
        rstd,
    } = parts;
    let gamma = &gamma[channels.clone()];
    let count = x.len() as f64;
    let k = if center { x[0] } else { T::default() };
    // Σ dy gamma, Σ dy gamma (x - k) and Σ (x - k) over the row; per channel too when it has
    // several positions.
    let (row_sums, per_channel) = match s {
        1 => {
            grads.scaled_dy.clear();
            let scaled = dy.iter().zip(gamma).map(|(&g, &w)| g * w);
            grads.scaled_dy.extend(scaled);
            (simd::shifted_grad_sums(&grads.scaled_dy, x, k), Vec::new())
        }
        _ => {
            let per_channel: Vec<[f64; 3]> = x
                .chunks(s)
                .zip(dy.chunks(s))
                .map(|(x, dy)| simd::shifted_grad_sums(dy, x, k))
                .collect();
            let mut totals = [0.0f64; 3];
            for (sums, gamma) in per_channel.iter().zip(gamma) {
                let g = gamma.to_f64();
                totals[0] += g * sums[0];
                totals[1] += g * sums[1];
                totals[2] += sums[2];
            }
            (totals, per_channel)
        }
    };
    let [sum_g, sum_g_d, sum_d] = row_sums;
    let centre = match center {
        true => Centre::of(k, sum_d, x.len()),
        false => Centre::none(),
    };
    let residual = centre.r.to_f64();
    let sum_g_x_hat = (sum_g_d - residual * sum_g) * rstd;
    let mean_g = if center { sum_g / count } else { 0.0 };
    let slope = T::from_f64(-rstd * rstd * sum_g_x_hat / count);
    let offset = T::from_f64(-rstd * mean_g);
    match s {
        1 => {
            let rstd = T::from_f64(rstd);
            let coefficients = [centre.k, centre.r, rstd, slope, offset];
            simd::gradient(dx, x, &grads.scaled_dy, coefficients);
            let [sum_dy, sum_dy_x_hat] = &mut grads.dense;
            let sums = [&mut sum_dy[channels.clone()], &mut sum_dy_x_hat[channels]];
            simd::add_param_grads(sums, dy, x, [centre.k, centre.r, rstd]);
        }
        _ => {
            let segments = dx.chunks_mut(s).zip(x.chunks(s).zip(dy.chunks(s)));
            let sums = per_channel.iter().zip(&mut grads.sums[channels]);
            for ((dx, (x, dy)), (gamma, (sums, acc))) in segments.zip(gamma.iter().zip(sums)) {
                let per_dy = T::from_f64(rstd * gamma.to_f64());
                simd::gradient(dx, x, dy, [centre.k, centre.r, per_dy, slope, offset]);
                acc.0 += sums[0];
                acc.1 += (sums[1] - residual * sums[0]) * rstd;
            }
        }
    }
}

/// Per channel of `[N, C, S]` data, the sums `per_segment` gives for each of its `N`
/// segments of `S` values, added in sample order. Channels run in parallel when there are many
/// positions; with few (dense layers), blocks of channels run in parallel, each walking the
/// samples over contiguous memory.
fn channel_sums<const K: usize>(
    dims: Dims,
    per_segment: impl Fn(usize, std::ops::Range<usize>) -> [f64; K] + Sync,
) -> Vec<[f64; K]> {
    let Dims { n, c, s } = dims;
    let per_channel = |channel: usize| -> [f64; K] {
        let mut total = [0.0; K];
        for sample in 0..n {
            let start = (sample * c + channel) * s;
            let sums = per_segment(channel, start..start + s);
            for k in 0..K {
                total[k] += sums[k];
            }
        }
        total
    };
    const CHANNELS: usize = 64;
    let per_block = |block: usize| -> Vec<[f64; K]> {
        (block * CHANNELS..((block + 1) * CHANNELS).min(c))
            .map(per_channel)
            .collect()
    };
    let blocks = c.div_ceil(CHANNELS);
    let parallel = dims.len() >= PARALLEL_MIN;
    // A channel with few positions is too little work for a task of its own.
    match (s >= 32, parallel) {
        (true, true) => (0..c).into_par_iter().map(per_channel).collect(),
        (true, false) => (0..c).map(per_channel).collect(),
        (false, true) => (0..blocks)
            .into_par_iter()
            .flat_map_iter(per_block)
            .collect(),
        (false, false) => (0..blocks).flat_map(per_block).collect(),
    }
}

/// Per channel of `x: [N, C, S]`, shifted sums `[Σ (x - k_c), Σ (x - k_c)^2]` with `k_c` the
/// channel's first value.
fn channel_stat_sums<T: Real>(x: &[T], dims: Dims) -> (Vec<T>, Vec<[f64; 2]>) {
    let shift: Vec<T> = (0..dims.c).map(|channel| x[channel * dims.s]).collect();
    let sums = match dims.s {
        1 => dense_sums(dims, |row, columns, [sum, sum_sq]: &mut [Vec<T>; 2]| {
            simd::add_shifted_sums([sum, sum_sq], &x[row], &shift[columns]);
        }),
        _ => channel_sums(dims, |channel, at| {
            simd::shifted_sums(&x[at], shift[channel])
        }),
    };
    (shift, sums)
}

/// Per channel of `[N, C, 1]` data (a dense layer's batch), sums accumulated row by row by
/// `add(row range, column range, accumulators)` into one accumulator per channel and term,
/// contiguous so that it vectorizes across channels. Each span of 64 rows of a block of
/// channels is summed in `T` on its own, and the spans are added into `f64` in row order: the
/// spans run in parallel (a batch of a few hundred channels is one block), yet every sum is the
/// same to the bit however rayon shares them out.
fn dense_sums<T: Real, const K: usize>(
    dims: Dims,
    add: impl Fn(std::ops::Range<usize>, std::ops::Range<usize>, &mut [Vec<T>; K]) + Sync,
) -> Vec<[f64; K]> {
    const CHANNELS: usize = 256;
    const ROWS: usize = 64;
    let columns = |block: usize| block * CHANNELS..((block + 1) * CHANNELS).min(dims.c);
    let spans = dims.n.div_ceil(ROWS);
    let span_sums = |(block, span): (usize, usize)| -> [Vec<T>; K] {
        let columns = columns(block);
        let mut lanes = std::array::from_fn(|_| vec![T::default(); columns.len()]);
        for sample in span * ROWS..((span + 1) * ROWS).min(dims.n) {
            let start = sample * dims.c;
            add(
                start + columns.start..start + columns.end,
                columns.clone(),
                &mut lanes,
            );
        }
        lanes
    };
    let blocks = dims.c.div_ceil(CHANNELS);
    let tasks = (0..blocks).flat_map(|block| (0..spans).map(move |span| (block, span)));
    let partial: Vec<[Vec<T>; K]> = match dims.len() >= PARALLEL_MIN {
        true => tasks
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(span_sums)
            .collect(),
        false => tasks.map(span_sums).collect(),
    };
    let mut totals = Vec::with_capacity(dims.c);
    for block in 0..blocks {
        let mut block_totals = vec![[0.0f64; K]; columns(block).len()];
        for lanes in &partial[block * spans..(block + 1) * spans] {
            for (k, lane) in lanes.iter().enumerate() {
                for (total, value) in block_totals.iter_mut().zip(lane) {
                    total[k] += value.to_f64();
                }
            }
        }
        totals.extend(block_totals);
    }
    totals
}

/// Per channel of `x: [N, C, S]`: `[Σ dy, Σ dy (x - k_c), Σ (x - k_c)]`, `k_c` the channel's
/// first value.
fn channel_grad_sums<T: Real>(x: &[T], dy: &[T], dims: Dims) -> (Vec<T>, Vec<[f64; 3]>) {
    let shift: Vec<T> = (0..dims.c).map(|channel| x[channel * dims.s]).collect();
    let sums = shifted_channel_grad_sums(x, dy, &shift, dims);
    (shift, sums)
}

/// Per channel of `x: [N, C, S]`: `[Σ dy, Σ dy (x - k_c), Σ (x - k_c)]` for the given `k`.
fn shifted_channel_grad_sums<T: Real>(x: &[T], dy: &[T], k: &[T], dims: Dims) -> Vec<[f64; 3]> {
    match dims.s {
        1 => dense_sums(dims, |row, columns, sums: &mut [Vec<T>; 3]| {
            let [sum_dy, sum_dy_d, sum_d] = sums;
            let (x, dy, k) = (&x[row.clone()], &dy[row], &k[columns]);
            simd::add_shifted_grad_sums([sum_dy, sum_dy_d, sum_d], dy, x, k);
        }),
        _ => channel_sums(dims, |channel, at| {
            simd::shifted_grad_sums(&dy[at.clone()], &x[at], k[channel])
        }),
    }
}

/// Writes `sample(out, range)` for every sample (`C * S` values, at `range` of the input), in
/// parallel over the samples.
fn per_sample<T: Real>(
    out: &mut [MaybeUninit<T>],
    dims: Dims,
    sample: impl Fn(&mut [MaybeUninit<T>], std::ops::Range<usize>) + Sync,
) {
    let width = dims.c * dims.s;
    let task = task_len(dims.n, width, dims.len());
    out.par_chunks_mut(width * task)
        .enumerate()
        .for_each(|(t, out)| {
            for (k, out) in out.chunks_mut(width).enumerate() {
                let start = (t * task + k) * width;
                sample(out, start..start + width);
            }
        });
}

/// A per-channel map `y = (x - centre_c) * scale_c + shift_c`, as three arrays so that a dense
/// row (one value per channel) vectorizes across channels. A centre kept as one of the
/// channel's values plus a residual goes in as that value, the residual folded into `shift`.
struct ChannelMap<T> {
    centre: Vec<T>,
    scale: Vec<T>,
    shift: Vec<T>,
}

impl<T: Real> ChannelMap<T> {
    fn with_capacity(c: usize) -> Self {
        Self {
            centre: Vec::with_capacity(c),
            scale: Vec::with_capacity(c),
            shift: Vec::with_capacity(c),
        }
    }

    /// Appends a channel's map `((x - k) - r) * scale + shift`.
    fn push(&mut self, centre: Centre<T>, scale: f64, shift: f64) {
        self.centre.push(centre.k);
        self.scale.push(T::from_f64(scale));
        self.shift.push(centre.folded(shift, scale));
    }

    /// Writes the map of one sample of `C` channels of `s` positions: every value of `out`,
    /// which holds `C * s` of them as `x` does (one map per channel).
    fn apply(&self, out: &mut [MaybeUninit<T>], x: &[T], s: usize) {
        match s {
            1 => simd::affine_each(out, x, &self.centre, &self.scale, &self.shift),
            _ => {
                let maps = self.centre.iter().zip(&self.scale).zip(&self.shift);
                for ((out, x), ((&k, &a), &b)) in out.chunks_mut(s).zip(x.chunks(s)).zip(maps) {
                    simd::affine(out, x, [k, T::default(), a, b]);
                }
            }
        }
    }
}

/// A per-channel input gradient `dx = dy * per_dy_c + (x - centre_c) * slope_c + offset_c`,
/// as arrays for the same reason as [`ChannelMap`].
struct GradientMap<T> {
    centre: Vec<T>,
    per_dy: Vec<T>,
    slope: Vec<T>,
    offset: Vec<T>,
}

impl<T: Real> GradientMap<T> {
    /// Writes the input gradient of one sample of `C` channels of `s` positions: every value
    /// of `dx`, which holds `C * s` of them as `x` and `dy` do (one map per channel).
    fn apply(&self, dx: &mut [MaybeUninit<T>], x: &[T], dy: &[T], s: usize) {
        match s {
            1 => simd::gradient_each(
                dx,
                x,
                dy,
                [&self.centre, &self.per_dy, &self.slope, &self.offset],
            ),
            _ => {
                let segments = dx.chunks_mut(s).zip(x.chunks(s).zip(dy.chunks(s)));
                let maps = self
                    .centre
                    .iter()
                    .zip(&self.per_dy)
                    .zip(self.slope.iter().zip(&self.offset));
                for ((dx, (x, dy)), ((&k, &a), (&b, &o))) in segments.zip(maps) {
                    simd::gradient(dx, x, dy, [k, T::default(), a, b, o]);
                }
            }
        }
    }
}

/// Batch norm's forward in training: each channel normalized by its mean and biased variance
/// over the samples and positions of each virtual batch, then scaled and shifted. `chunks` are
/// the batches' sizes in samples, consecutive and adding up to `N` (`[N]`: plain batch norm).
/// Returns the output and each batch's per-channel mean and biased variance, batch after batch.
pub(crate) fn batch_norm<T: Real>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    dims: Dims,
    chunks: &[usize],
    epsilon: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    dims.check(x, &[gamma, beta]);
    assert_eq!(
        chunks.iter().sum::<usize>(),
        dims.n,
        "virtual batches of {dims:?}"
    );
    let stats = dims.c * chunks.len();
    if dims.len() == 0 {
        return nothing(stats);
    }
    let mut out = output(dims.len());
    let per_batch: Vec<(Vec<T>, Vec<T>)> = virtual_batches(dims, chunks, &mut out)
        .into_par_iter()
        .with_min_len(batches_per_task(dims, chunks))
        .map(|(dims, at, out)| {
            let x = &x[at];
            let (shift, sums) = channel_stat_sums(x, dims);
            let (mut means, mut vars) = (Vec::with_capacity(dims.c), Vec::with_capacity(dims.c));
            let map = batch_maps(
                &shift,
                &sums,
                dims.n * dims.s,
                [gamma, beta],
                epsilon,
                [&mut means, &mut vars],
            );
            per_sample(out, dims, |out, at| map.apply(out, &x[at], dims.s));
            (means, vars)
        })
        .collect();
    let (mut means, mut vars) = (Vec::with_capacity(stats), Vec::with_capacity(stats));
    for (batch_means, batch_vars) in per_batch {
        means.extend(batch_means);
        vars.extend(batch_vars);
    }
    // SAFETY: the virtual batches tile `out`, and `per_sample` hands every sample's values of
    // each to `apply`, which writes them all (see there).
    (unsafe { written(out) }, means, vars)
}

/// Each virtual batch of [`batch_norm`]: its dims, where its values lie in the whole, and its
/// part of the output `out`. The batches are independent, so they run in parallel: a ghost
/// batch of a few samples is below the size at which its own passes split across threads.
fn virtual_batches<'a, U>(
    dims: Dims,
    chunks: &[usize],
    mut out: &'a mut [U],
) -> Vec<(Dims, std::ops::Range<usize>, &'a mut [U])> {
    let sample = dims.c * dims.s;
    let mut start = 0;
    chunks
        .iter()
        .map(|&n| {
            let (batch, rest) = std::mem::take(&mut out).split_at_mut(n * sample);
            out = rest;
            let at = start..start + n * sample;
            start = at.end;
            (Dims { n, ..dims }, at, batch)
        })
        .collect()
}

/// How many of [`virtual_batches`] a rayon task takes: enough for the values of a task's worth
/// of work, all of them when the tensor is small.
fn batches_per_task(dims: Dims, chunks: &[usize]) -> usize {
    let largest = chunks.iter().max().map_or(0, |&n| n * dims.c * dims.s);
    task_len(chunks.len(), largest, dims.len())
}

/// Batch norm's backward in training, per virtual batch:
/// `dx = gamma * rstd * (dy - mean(dy) - x_hat * mean(dy * x_hat))` with the means per channel
/// over the batch's samples and positions; `dgamma = Σ dy * x_hat`, `dbeta = Σ dy`, added up
/// over the batches. Each batch's centre is recomputed exactly from `x` in the same pass; `var`
/// (per batch and channel, as [`batch_norm`] returns it) comes from the forward.
pub(crate) fn batch_norm_backward<T: Real>(
    x: &[T],
    dy: &[T],
    gamma: &[T],
    var: &[T],
    dims: Dims,
    chunks: &[usize],
    epsilon: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    dims.check(x, &[gamma]);
    assert_eq!(dy.len(), x.len(), "output gradient of {dims:?}");
    assert_eq!(
        chunks.iter().sum::<usize>(),
        dims.n,
        "virtual batches of {dims:?}"
    );
    assert_eq!(var.len(), dims.c * chunks.len(), "variances of {dims:?}");
    if dims.len() == 0 {
        return nothing(dims.c);
    }
    let mut dx = output(dims.len());
    let batch_grads: Vec<(Vec<T>, Vec<T>)> = virtual_batches(dims, chunks, &mut dx)
        .into_par_iter()
        .zip(var.par_chunks(dims.c))
        .with_min_len(batches_per_task(dims, chunks))
        .map(|((dims, at, dx), var)| {
            let (x, dy) = (&x[at.clone()], &dy[at]);
            let (shift, sums) = channel_grad_sums(x, dy, dims);
            let (map, batch_dgamma, batch_dbeta) =
                batch_gradient_maps(&shift, &sums, dims.n * dims.s, gamma, var, epsilon);
            per_sample(dx, dims, |dx, at| {
                map.apply(dx, &x[at.clone()], &dy[at], dims.s)
            });
            (batch_dgamma, batch_dbeta)
        })
        .collect();
    // Rounded to `T` per batch and added in `T`, the last batch first: the numbers that autodiff
    // gives a batch norm per virtual batch (it walks the graph back from the last one).
    let mut batch_grads = batch_grads.into_iter().rev();
    let (mut dgamma, mut dbeta) = batch_grads.next().expect("one batch or more");
    for (batch_dgamma, batch_dbeta) in batch_grads {
        add_to(&mut dgamma, batch_dgamma);
        add_to(&mut dbeta, batch_dbeta);
    }
    // SAFETY: the virtual batches tile `dx`, and `per_sample` hands every sample's values of
    // each to `apply`, which writes them all (see there).
    (unsafe { written(dx) }, dgamma, dbeta)
}

/// Batch norm's map of each channel, `(x - mean) * gamma / sqrt(var + epsilon) + beta`, from
/// its shifted sums `[Σ (x - k), Σ (x - k)^2]` over `count` values; each channel's mean and
/// biased variance are appended to `means` and `vars`.
fn batch_maps<T: Real>(
    shift: &[T],
    sums: &[[f64; 2]],
    count: usize,
    [gamma, beta]: [&[T]; 2],
    epsilon: f64,
    [means, vars]: [&mut Vec<T>; 2],
) -> ChannelMap<T> {
    let c = shift.len();
    let mut map = ChannelMap {
        centre: shift.to_vec(),
        scale: vec![T::default(); c],
        shift: vec![T::default(); c],
    };
    let [start_means, start_vars] = [means.len(), vars.len()];
    means.resize(start_means + c, T::default());
    vars.resize(start_vars + c, T::default());
    let outputs = [
        &mut map.scale[..],
        &mut map.shift[..],
        &mut means[start_means..],
        &mut vars[start_vars..],
    ];
    batch_map_values(shift, sums, count, [gamma, beta], epsilon, outputs);
    map
}

/// [`batch_maps`]' values, channel by channel: `outputs` are the maps' scales and shifts
/// ([`ChannelMap::push`]'s), the means and the variances. Compiled for the CPU's widest
/// vectors, which take several channels' divisions and square roots at once; each operation is
/// correctly rounded whatever the width, so every width gives the same bits.
// `S` is the instruction set the body is compiled for: scalar code the compiler vectorizes.
#[allow(clippy::extra_unused_type_parameters)]
#[with_simd]
fn batch_map_values<'a, S: Simd, T: Real>(
    shift: &'a [T],
    sums: &'a [[f64; 2]],
    count: usize,
    params: [&'a [T]; 2],
    epsilon: f64,
    outputs: [&'a mut [T]; 4],
) {
    let [gamma, beta] = params;
    let [scales, shifts, means, vars] = outputs;
    let c = shift.len();
    assert!(sums.len() == c && gamma.len() == c && beta.len() == c);
    assert!(scales.len() == c && shifts.len() == c && means.len() == c && vars.len() == c);
    for channel in 0..c {
        let (centre, var) = moments(shift[channel], sums[channel], count, true);
        let scale = gamma[channel].to_f64() / (var + epsilon).sqrt();
        scales[channel] = T::from_f64(scale);
        shifts[channel] = centre.folded(beta[channel].to_f64(), scale);
        means[channel] = T::from_f64(centre.mean());
        vars[channel] = T::from_f64(var);
    }
}

/// Batch norm's input-gradient map of each channel,
/// `gamma * rstd * (dy - mean(dy) - x_hat * mean(dy * x_hat))`, and its `dgamma = Σ dy x_hat`
/// and `dbeta = Σ dy`, from its sums `[Σ dy, Σ dy (x - k), Σ (x - k)]`: the means are over the
/// `count` values the statistics were taken over, which the last sum covers; the centre is
/// recomputed from it exactly, `var` comes from the forward.
fn batch_gradient_maps<T: Real>(
    shift: &[T],
    sums: &[[f64; 3]],
    count: usize,
    gamma: &[T],
    var: &[T],
    epsilon: f64,
) -> (GradientMap<T>, Vec<T>, Vec<T>) {
    let c = shift.len();
    let zeros = || vec![T::default(); c];
    let mut map = GradientMap {
        centre: shift.to_vec(),
        per_dy: zeros(),
        slope: zeros(),
        offset: zeros(),
    };
    let (mut dgamma, mut dbeta) = (zeros(), zeros());
    let outputs = [
        &mut map.per_dy[..],
        &mut map.slope[..],
        &mut map.offset[..],
        &mut dgamma[..],
        &mut dbeta[..],
    ];
    batch_gradient_values(shift, sums, count, [gamma, var], epsilon, outputs);
    (map, dgamma, dbeta)
}

/// [`batch_gradient_maps`]' values, channel by channel: `outputs` are the [`GradientMap`]'s
/// `per_dy`, `slope` and `offset`, `dgamma` and `dbeta`; on the widest vectors, with the same
/// bits at every width, as [`batch_map_values`].
// `S` is the instruction set the body is compiled for: scalar code the compiler vectorizes.
#[allow(clippy::extra_unused_type_parameters)]
#[with_simd]
fn batch_gradient_values<'a, S: Simd, T: Real>(
    shift: &'a [T],
    sums: &'a [[f64; 3]],
    count: usize,
    params: [&'a [T]; 2],
    epsilon: f64,
    outputs: [&'a mut [T]; 5],
) {
    let [gamma, var] = params;
    let [per_dy, slope, offset, dgamma, dbeta] = outputs;
    let c = shift.len();
    assert!(sums.len() == c && gamma.len() == c && var.len() == c);
    assert!([per_dy.len(), slope.len(), offset.len()] == [c; 3]);
    assert!(dgamma.len() == c && dbeta.len() == c);
    let n = count as f64;
    for channel in 0..c {
        let [sum_dy, sum_dy_d, sum_d] = sums[channel];
        let centre = Centre::of(shift[channel], sum_d, count);
        let rstd = 1.0 / (var[channel].to_f64() + epsilon).sqrt();
        let g = gamma[channel].to_f64();
        let sum_dy_x_hat = (sum_dy_d - centre.r.to_f64() * sum_dy) * rstd;
        let channel_slope = -g * rstd * rstd * sum_dy_x_hat / n;
        per_dy[channel] = T::from_f64(g * rstd);
        slope[channel] = T::from_f64(channel_slope);
        offset[channel] = centre.folded(-g * rstd * sum_dy / n, channel_slope);
        dgamma[channel] = T::from_f64(sum_dy_x_hat);
        dbeta[channel] = T::from_f64(sum_dy);
    }
}

/// `total += values`, value by value.
fn add_to<T: Real>(total: &mut [T], values: Vec<T>) {
    for (total, v) in total.iter_mut().zip(values) {
        *total = *total + v;
    }
}

/// `y = (x - centre[c]) * scale[c] + shift[c]`: batch norm in eval, with `scale = gamma /
/// sqrt(var + eps)` and `shift = beta`.
pub(crate) fn channel_affine<T: Real>(
    x: &[T],
    centre: &[T],
    scale: &[T],
    shift: &[T],
    dims: Dims,
) -> Vec<T> {
    dims.check(x, &[centre, scale, shift]);
    if dims.len() == 0 {
        return Vec::new();
    }
    let map = ChannelMap {
        centre: centre.to_vec(),
        scale: scale.to_vec(),
        shift: shift.to_vec(),
    };
    let mut out = output(dims.len());
    per_sample(&mut out, dims, |out, at| map.apply(out, &x[at], dims.s));
    // SAFETY: `per_sample` hands every sample's values of `out` to `apply`, which writes them
    // all (see there).
    unsafe { written(out) }
}

/// The backward of [`channel_affine`], the centre a constant: `dx = dy * scale[c]`,
/// `dscale = Σ dy * (x - centre)`, `dshift = Σ dy`.
pub(crate) fn channel_affine_backward<T: Real>(
    x: &[T],
    dy: &[T],
    centre: &[T],
    scale: &[T],
    dims: Dims,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    dims.check(x, &[centre, scale]);
    assert_eq!(dy.len(), x.len(), "output gradient of {dims:?}");
    if dims.len() == 0 {
        return nothing(dims.c);
    }
    let sums = shifted_channel_grad_sums(x, dy, centre, dims);
    let dscale = sums.iter().map(|s| T::from_f64(s[1])).collect();
    let dshift = sums.iter().map(|s| T::from_f64(s[0])).collect();
    let map = ChannelMap {
        centre: vec![T::default(); dims.c],
        scale: scale.to_vec(),
        shift: vec![T::default(); dims.c],
    };
    let mut dx = output(dims.len());
    per_sample(&mut dx, dims, |dx, at| map.apply(dx, &dy[at], dims.s));
    // SAFETY: `per_sample` hands every sample's values of `dx` to `apply`, which writes them
    // all (see there).
    (unsafe { written(dx) }, dscale, dshift)
}

#[cfg(test)]
mod tests;
