//! 2-D convolution on the CPU as one matrix product per sample, in the `[N, C, H, W]` layout
//! throughout: the sample's patches are laid out as columns (`im2col`, skipped for a 1x1
//! kernel without stride or padding), and `W [C_out, C_in * kh * kw]` times them is the output
//! sample `[C_out, H_out * W_out]` itself, with no transposes. The backward runs the same
//! products transposed, and scatters the patch gradients back (`col2im`).
//!
//! Samples are spread over the cores in tasks whose size depends on the shape alone, and the
//! weight gradient adds the tasks' partial sums in task order: the same numbers on every run.

use std::cell::RefCell;
use std::ops::Range;

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// The float types the kernels run on.
pub(crate) trait Real:
    burn::tensor::Element + Default + bytemuck::Pod + std::ops::Add<Output = Self>
{
    const ONE: Self;
    /// Adds nothing to any value, a zero of either sign included.
    const MINUS_ZERO: Self;
}

impl Real for f32 {
    const ONE: Self = 1.0;
    const MINUS_ZERO: Self = -0.0;
}

impl Real for f64 {
    const ONE: Self = 1.0;
    const MINUS_ZERO: Self = -0.0;
}

/// The geometry of a convolution: `n` samples of `c_in x h x w` into `c_out x h_out x w_out`
/// through `kernel` with `stride` and zero `padding` (the same on both sides of each axis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvDims {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl ConvDims {
    pub fn out_hw(&self) -> [usize; 2] {
        let out = |size: usize, axis: usize| {
            (size + 2 * self.padding[axis] - self.kernel[axis]) / self.stride[axis] + 1
        };
        [out(self.h, 0), out(self.w, 1)]
    }

    fn out_plane(&self) -> usize {
        let [ho, wo] = self.out_hw();
        ho * wo
    }

    fn in_sample(&self) -> usize {
        self.c_in * self.h * self.w
    }

    fn out_sample(&self) -> usize {
        self.c_out * self.out_plane()
    }

    /// Rows of the patch matrix: one per input channel and kernel position.
    fn patch_rows(&self) -> usize {
        self.c_in * self.kernel[0] * self.kernel[1]
    }

    /// A 1x1 kernel without stride or padding: the input sample is its own patch matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
    }

    /// The values of one sample's patch columns: none for a pointwise kernel, which reads its
    /// input as they are.
    fn patch_len(&self) -> usize {
        if self.is_pointwise() {
            0
        } else {
            self.patch_rows() * self.out_plane()
        }
    }

    /// Samples per task: enough work per task to outweigh handing it to a thread (about a
    /// million multiply-adds), whatever the number of threads.
    fn task(&self) -> usize {
        let per_sample = self.out_sample() * self.patch_rows();
        (1usize << 20)
            .div_ceil(per_sample.max(1))
            .clamp(1, self.n.max(1))
    }

    /// The output positions along one axis whose input `index * stride + k - padding` falls
    /// inside `0..size`, for kernel offset `k`.
    fn valid_outputs(&self, axis: usize, k: usize) -> Range<usize> {
        let size = [self.h, self.w][axis];
        let out = self.out_hw()[axis];
        let (stride, pad) = (self.stride[axis], self.padding[axis]);
        // First output with index * stride + k >= pad, and first with it >= size + pad.
        let first = pad.saturating_sub(k).div_ceil(stride);
        let end = (size + pad).saturating_sub(k).div_ceil(stride);
        first.min(out)..end.min(out)
    }

    /// The output rows and columns each kernel offset reaches inside the input, indexed by
    /// `ky * kw + kx`: computed once per sample rather than once per patch row.
    fn valid_windows(&self) -> Vec<(Range<usize>, Range<usize>)> {
        let [kh, kw] = self.kernel;
        (0..kh * kw)
            .map(|k| (self.valid_outputs(0, k / kw), self.valid_outputs(1, k % kw)))
            .collect()
    }
}

thread_local! {
    /// Each thread's patch-column scratch, kept between calls: at small batches a fresh buffer
    /// per call costs page faults that rival the arithmetic. Held as `u64` words so that any
    /// [`Real`] borrows it aligned; it keeps the largest size a thread has needed.
    static PATCH_SCRATCH: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` values of this thread's scratch. Its contents are left over from earlier
/// calls: `f` must write every value before it reads one (`im2col` and a `matmul` that does not
/// read its destination do). `f` must not call back in (nothing here does; the kernels inside
/// run on this thread).
fn with_patch_scratch<T: Real, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    PATCH_SCRATCH.with(|cell| {
        let mut words = cell.borrow_mut();
        let needed = (len * size_of::<T>()).div_ceil(size_of::<u64>());
        if words.len() < needed {
            words.resize(needed, 0);
        }
        let values: &mut [T] = bytemuck::cast_slice_mut(&mut words[..needed]);
        f(&mut values[..len])
    })
}

/// `dst = (read_dst ? dst : 0) + lhs * rhs` for row-major `lhs [m, k]` (strides given) and
/// `rhs [k, n]`, into row-major `dst [m, n]`, on this thread.
#[allow(clippy::too_many_arguments)]
fn matmul<T: Real>(
    [m, n, k]: [usize; 3],
    dst: &mut [T],
    read_dst: bool,
    lhs: &[T],
    [lhs_rs, lhs_cs]: [usize; 2],
    rhs: &[T],
    [rhs_rs, rhs_cs]: [usize; 2],
) {
    assert!(dst.len() >= m * n);
    let last = |rs: usize, cs: usize, rows: usize, cols: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs + 1
    };
    assert!(lhs.len() >= last(lhs_rs, lhs_cs, m, k) && rhs.len() >= last(rhs_rs, rhs_cs, k, n));
    // SAFETY: the asserts above keep every index the strides reach inside the slices, and
    // `dst` does not alias the inputs (a `&mut` and two `&`).
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            read_dst,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// Lays one sample `x: [C_in, H, W]` out as patch columns: `col [C_in * kh * kw, H_out *
/// W_out]`, zero where a patch reaches into the padding.
fn im2col<T: Real>(x: &[T], d: &ConvDims, col: &mut [T]) {
    let [ho, wo] = d.out_hw();
    let [kh, kw] = d.kernel;
    let windows = d.valid_windows();
    // With stride 1 and outputs as wide as the input, a patch row is its input plane shifted by
    // a constant offset: one copy instead of one per output row.
    let shifted = d.stride == [1, 1] && wo == d.w;
    for (r, row) in col.chunks_exact_mut(ho * wo).enumerate() {
        let (c, ky, kx) = (r / (kh * kw), r / kw % kh, r % kw);
        let plane = &x[c * d.h * d.w..(c + 1) * d.h * d.w];
        let (ys, xs) = &windows[r % (kh * kw)];
        if ys.is_empty() || xs.is_empty() {
            row.fill(T::default());
            continue;
        }
        // Whole output rows whose inputs lie in the padding, then the valid rows.
        row[..ys.start * wo].fill(T::default());
        row[ys.end * wo..].fill(T::default());
        let ix = |ox: usize| ox * d.stride[1] + kx - d.padding[1];
        let iy = |oy: usize| oy * d.stride[0] + ky - d.padding[0];
        if shifted {
            let (first, end) = (ys.start * wo + xs.start, (ys.end - 1) * wo + xs.end);
            let source = iy(ys.start) * d.w + ix(xs.start);
            row[first..end].copy_from_slice(&plane[source..source + end - first]);
        }
        for oy in ys.clone() {
            let out = &mut row[oy * wo..(oy + 1) * wo];
            // The columns whose inputs lie in the padding (the shifted copy put the
            // neighbouring row's values there).
            out[..xs.start].fill(T::default());
            out[xs.end..].fill(T::default());
            if shifted {
                continue;
            }
            let line = &plane[iy(oy) * d.w..(iy(oy) + 1) * d.w];
            match d.stride[1] {
                1 => out[xs.clone()].copy_from_slice(&line[ix(xs.start)..ix(xs.start) + xs.len()]),
                _ => {
                    for ox in xs.clone() {
                        out[ox] = line[ix(ox)];
                    }
                }
            }
        }
    }
}

/// One sample's patch columns: the sample itself for a pointwise kernel, else laid out in
/// `col` by [`im2col`].
fn patches<'a, T: Real>(x: &'a [T], d: &ConvDims, col: &'a mut [T]) -> &'a [T] {
    if d.is_pointwise() {
        return x;
    }
    im2col(x, d, col);
    col
}

/// Adds patch-column gradients `dcol [C_in * kh * kw, H_out * W_out]` back onto the sample's
/// input gradient `dx: [C_in, H, W]`: the adjoint of [`im2col`]. Each input's gradient gets its
/// terms in patch-row order. `dcol` is scratch: the terms of padded positions may be
/// overwritten.
fn col2im<T: Real>(dcol: &mut [T], d: &ConvDims, dx: &mut [T]) {
    let [ho, wo] = d.out_hw();
    let [kh, kw] = d.kernel;
    let windows = d.valid_windows();
    // As in `im2col`: with stride 1 and outputs as wide as the input, a patch row adds onto
    // its input plane shifted, in one pass once the padded columns hold -0.0, which leaves
    // every value it is added to as it was (+0.0 would turn a -0.0 into +0.0).
    let shifted = d.stride == [1, 1] && wo == d.w;
    for (r, row) in dcol.chunks_exact_mut(ho * wo).enumerate() {
        let (c, ky, kx) = (r / (kh * kw), r / kw % kh, r % kw);
        let plane = &mut dx[c * d.h * d.w..(c + 1) * d.h * d.w];
        let (ys, xs) = &windows[r % (kh * kw)];
        if ys.is_empty() || xs.is_empty() {
            continue;
        }
        let ix = |ox: usize| ox * d.stride[1] + kx - d.padding[1];
        let iy = |oy: usize| oy * d.stride[0] + ky - d.padding[0];
        if shifted {
            for oy in ys.clone() {
                let grads = &mut row[oy * wo..(oy + 1) * wo];
                grads[..xs.start].fill(T::MINUS_ZERO);
                grads[xs.end..].fill(T::MINUS_ZERO);
            }
            let (first, end) = (ys.start * wo + xs.start, (ys.end - 1) * wo + xs.end);
            let target = iy(ys.start) * d.w + ix(xs.start);
            let line = &mut plane[target..target + end - first];
            for (v, &g) in line.iter_mut().zip(&row[first..end]) {
                *v = *v + g;
            }
            continue;
        }
        for oy in ys.clone() {
            let line = &mut plane[iy(oy) * d.w..(iy(oy) + 1) * d.w];
            let grads = &row[oy * wo..(oy + 1) * wo];
            match d.stride[1] {
                // Contiguous on both sides: one zipped add the compiler vectorises.
                1 => {
                    let line = &mut line[ix(xs.start)..ix(xs.start) + xs.len()];
                    for (v, &g) in line.iter_mut().zip(&grads[xs.clone()]) {
                        *v = *v + g;
                    }
                }
                _ => {
                    for ox in xs.clone() {
                        line[ix(ox)] = line[ix(ox)] + grads[ox];
                    }
                }
            }
        }
    }
}

/// The convolution of `x: [N, C_in, H, W]` with `weight: [C_out, C_in, kh, kw]` plus `bias:
/// [C_out]`, as `[N, C_out, H_out, W_out]`.
pub(crate) fn conv2d<T: Real>(x: &[T], weight: &[T], bias: &[T], d: &ConvDims) -> Vec<T> {
    let (plane, k) = (d.out_plane(), d.patch_rows());
    let mut out = vec![T::default(); d.n * d.out_sample()];
    let task = d.task();
    out.par_chunks_mut(task * d.out_sample())
        .zip(x.par_chunks(task * d.in_sample()))
        .for_each(|(out, x)| {
            with_patch_scratch(d.patch_len(), |col| {
                for (out, x) in out.chunks_mut(d.out_sample()).zip(x.chunks(d.in_sample())) {
                    for (row, &b) in out.chunks_mut(plane).zip(bias) {
                        row.fill(b);
                    }
                    let patches = patches(x, d, col);
                    let shape = [d.c_out, plane, k];
                    matmul(shape, out, true, weight, [k, 1], patches, [plane, 1]);
                }
            })
        });
    out
}

/// The input gradient of [`conv2d`] given the output gradient `dy`: per sample, `W^T dy` as
/// patch gradients, scattered back onto the input.
pub(crate) fn conv2d_input_grad<T: Real>(weight: &[T], dy: &[T], d: &ConvDims) -> Vec<T> {
    let (plane, k) = (d.out_plane(), d.patch_rows());
    let mut dx = vec![T::default(); d.n * d.in_sample()];
    let task = d.task();
    dx.par_chunks_mut(task * d.in_sample())
        .zip(dy.par_chunks(task * d.out_sample()))
        .for_each(|(dx, dy)| {
            with_patch_scratch(d.patch_len(), |dcol| {
                for (dx, dy) in dx.chunks_mut(d.in_sample()).zip(dy.chunks(d.out_sample())) {
                    // dpatches [k, plane] = W^T [k, C_out] * dy [C_out, plane].
                    let shape = [k, plane, d.c_out];
                    match d.is_pointwise() {
                        true => matmul(shape, dx, false, weight, [1, k], dy, [plane, 1]),
                        false => {
                            matmul(shape, dcol, false, weight, [1, k], dy, [plane, 1]);
                            col2im(dcol, d, dx);
                        }
                    }
                }
            })
        });
    dx
}

/// The weight and bias gradients `(dweight, dbias)` of [`conv2d`] given the output gradient
/// `dy`: `dy` times each sample's patches, transposed, summed over the samples.
pub(crate) fn conv2d_weight_grad<T: Real>(x: &[T], dy: &[T], d: &ConvDims) -> (Vec<T>, Vec<T>) {
    let (plane, k) = (d.out_plane(), d.patch_rows());
    let task = d.task();
    // Each task's gradients, summed in task order afterwards.
    let partials: Vec<(Vec<T>, Vec<T>)> = x
        .par_chunks(task * d.in_sample())
        .zip(dy.par_chunks(task * d.out_sample()))
        .map(|(x, dy)| {
            let mut dweight = vec![T::default(); d.c_out * k];
            let mut dbias = vec![T::default(); d.c_out];
            with_patch_scratch(d.patch_len(), |col| {
                let samples = x.chunks(d.in_sample()).zip(dy.chunks(d.out_sample()));
                for (i, (x, dy)) in samples.enumerate() {
                    for (db, row) in dbias.iter_mut().zip(dy.chunks(plane)) {
                        *db = row.iter().fold(*db, |sum, &v| sum + v);
                    }
                    let patches = patches(x, d, col);
                    // dW [C_out, k] += dy [C_out, plane] * patches^T [plane, k].
                    let shape = [d.c_out, k, plane];
                    matmul(
                        shape,
                        &mut dweight,
                        i > 0,
                        dy,
                        [plane, 1],
                        patches,
                        [1, plane],
                    );
                }
            });
            (dweight, dbias)
        })
        .collect();
    let mut parts = partials.into_iter();
    let zeros = || (vec![T::default(); d.c_out * k], vec![T::default(); d.c_out]);
    let (mut dweight, mut dbias) = parts.next().unwrap_or_else(zeros);
    for (w, b) in parts {
        for (total, v) in dweight.iter_mut().zip(w).chain(dbias.iter_mut().zip(b)) {
            *total = *total + v;
        }
    }
    (dweight, dbias)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the three kernels with every pool thread's scratch filled with `fill` first.
    fn kernels_after_scratch_of(fill: f32, d: &ConvDims) -> [Vec<f32>; 4] {
        rayon::broadcast(|_| with_patch_scratch::<f32, _>(1 << 16, |s| s.fill(fill)));
        let values = |len: usize, scale: f32| -> Vec<f32> {
            (0..len).map(|i| (i as f32 * scale).sin()).collect()
        };
        let x = values(d.n * d.in_sample(), 0.7);
        let weight = values(d.c_out * d.patch_rows(), 1.3);
        let bias = values(d.c_out, 0.4);
        let dy = values(d.n * d.out_sample(), 0.9);
        let (dweight, dbias) = conv2d_weight_grad(&x, &dy, d);
        let out = conv2d(&x, &weight, &bias, d);
        [out, conv2d_input_grad(&weight, &dy, d), dweight, dbias]
    }

    #[test]
    fn what_earlier_calls_left_in_the_scratch_never_reaches_a_result() {
        // Padding and a stride leave zeros in the patch columns that im2col must write itself.
        let d = ConvDims {
            n: 3,
            c_in: 2,
            h: 7,
            w: 6,
            c_out: 4,
            kernel: [3, 3],
            stride: [2, 2],
            padding: [2, 1],
        };
        let poisoned = kernels_after_scratch_of(f32::NAN, &d);
        let clean = kernels_after_scratch_of(0.0, &d);
        for (poisoned, clean) in poisoned.iter().zip(&clean) {
            assert!(poisoned.iter().all(|v| v.is_finite()));
            assert_eq!(poisoned, clean);
        }
    }

    /// Shapes that take the shifted copy (stride 1, outputs as wide as the input: "same"
    /// padding) and the row-by-row one; rows one off the vector widths; padding beyond "same",
    /// so that whole patch rows lie in it.
    fn patch_test_shapes() -> Vec<ConvDims> {
        let mut shapes = Vec::new();
        for (h, w) in [(1, 1), (3, 7), (7, 7), (8, 15), (17, 9), (28, 28)] {
            for (kernel, padding) in [(1, 0), (3, 1), (3, 0), (5, 2), (3, 2), (3, 4)] {
                for stride in [1, 2] {
                    shapes.push(ConvDims {
                        n: 1,
                        c_in: 2,
                        h,
                        w,
                        c_out: 1,
                        kernel: [kernel, kernel],
                        stride: [stride, stride],
                        padding: [padding, padding],
                    });
                }
            }
        }
        shapes.retain(|d| {
            d.h + 2 * d.padding[0] >= d.kernel[0] && d.w + 2 * d.padding[1] >= d.kernel[1]
        });
        shapes
    }

    /// The index in `x: [C_in, H, W]` that the value of patch row `r` at output `o` reads, by
    /// definition; `None` in the padding.
    fn input_of(d: &ConvDims, r: usize, o: usize) -> Option<usize> {
        let [kh, kw] = d.kernel;
        let [_, wo] = d.out_hw();
        let (c, ky, kx) = (r / (kh * kw), r / kw % kh, r % kw);
        let iy = ((o / wo) * d.stride[0] + ky).checked_sub(d.padding[0])?;
        let ix = ((o % wo) * d.stride[1] + kx).checked_sub(d.padding[1])?;
        (iy < d.h && ix < d.w).then(|| c * d.h * d.w + iy * d.w + ix)
    }

    #[test]
    fn patch_columns_hold_each_input_where_it_falls_and_zero_elsewhere() {
        let mut shifted = 0;
        for d in patch_test_shapes() {
            let [ho, wo] = d.out_hw();
            shifted += usize::from(d.stride == [1, 1] && wo == d.w);
            let x: Vec<f32> = (0..d.in_sample()).map(|i| i as f32 + 1.0).collect();
            // Poisoned: every value must be written.
            let mut col = vec![f32::NAN; d.patch_rows() * ho * wo];
            im2col(&x, &d, &mut col);
            for (r, row) in col.chunks(ho * wo).enumerate() {
                for (o, &value) in row.iter().enumerate() {
                    let want = input_of(&d, r, o).map_or(0.0, |at| x[at]);
                    assert_eq!(value.to_bits(), want.to_bits(), "{d:?} row {r} output {o}");
                }
            }
        }
        assert!(shifted >= 12, "{shifted} shapes took the shifted copy");
    }

    #[test]
    fn patch_gradients_add_onto_each_input_in_patch_row_order() {
        // The shapes of the patch-column test. Most terms and starting values are -0.0, which
        // stays -0.0 only if no padded position's term turns it into +0.0; the rest spread over
        // both signs.
        for d in patch_test_shapes() {
            let [ho, wo] = d.out_hw();
            let value = |i: usize| match i % 5 {
                0 => ((i as f32) * 0.37).sin() * 1e3,
                _ => -0.0,
            };
            let dcol: Vec<f32> = (0..d.patch_rows() * ho * wo).map(value).collect();
            let start: Vec<f32> = (0..d.in_sample()).map(|i| value(i + 2)).collect();
            let mut dx = start.clone();
            col2im(&mut dcol.clone(), &d, &mut dx);
            let mut want = start;
            for (r, row) in dcol.chunks(ho * wo).enumerate() {
                for (o, &g) in row.iter().enumerate() {
                    if let Some(at) = input_of(&d, r, o) {
                        want[at] += g;
                    }
                }
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&dx), bits(&want), "{d:?}");
        }
    }
}
