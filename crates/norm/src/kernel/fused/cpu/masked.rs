//! Batch norm in training over rows some of which are padding: `x: [R, C]`, a dense batch or
//! the time steps of padded sequences laid out as rows, each channel normalized by the mean and
//! biased variance of the rows `valid` marks. Padding enters no statistic and comes out as
//! zeros, so no gradient flows through it: a padded row's `dx` is zero and its `dy` enters
//! neither `dgamma`, `dbeta` nor any other row's gradient. The caller need not zero it again.
//!
//! Each pass skips or keeps whole rows, so the sums run over contiguous channel vectors as in
//! the dense batch norm kernel.

use std::mem::MaybeUninit;

use super::{
    Dims, Real, batch_gradient_maps, batch_maps, dense_sums, nothing, output, per_sample, written,
};
use crate::kernel::fused::simd;

/// The rows of a masked batch: `flags[r]` is true for a valid row.
struct ValidRows<'a> {
    flags: &'a [bool],
    /// How many rows are valid: at least one.
    count: usize,
    /// The first valid row: its values shift the sums.
    first: usize,
}

impl<'a> ValidRows<'a> {
    /// Checks `x` and the per-channel values against `c` channels of `flags.len()` rows.
    fn new<T>(flags: &'a [bool], x: &[T], per_channel: &[&[T]], c: usize) -> (Self, Dims) {
        let dims = Dims {
            n: flags.len(),
            c,
            s: 1,
        };
        dims.check(x, per_channel);
        let count = flags.iter().filter(|&&valid| valid).count();
        let first = flags.iter().position(|&valid| valid).unwrap_or(0);
        assert!(
            count > 0 || dims.len() == 0,
            "masked batch norm of {dims:?} with no valid row"
        );
        (
            Self {
                flags,
                count,
                first,
            },
            dims,
        )
    }

    /// Whether the row starting at value `start` of `[R, C]` data is valid.
    fn holds(&self, start: usize, c: usize) -> bool {
        self.flags[start / c]
    }

    /// The first valid row's values, one per channel: each channel's shift.
    fn shift<'x, T>(&self, x: &'x [T], c: usize) -> &'x [T] {
        &x[self.first * c..(self.first + 1) * c]
    }
}

/// The forward: the output of every row (zero for a padded one), and each channel's mean and
/// biased variance over the valid rows, `[C]`. `valid` has one flag per row; one row at least
/// must be valid.
pub(crate) fn masked_batch_norm<T: Real>(
    x: &[T],
    valid: &[bool],
    [gamma, beta]: [&[T]; 2],
    c: usize,
    epsilon: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (rows, dims) = ValidRows::new(valid, x, &[gamma, beta], c);
    if dims.len() == 0 {
        return nothing(c);
    }
    let shift = rows.shift(x, c);
    let sums = dense_sums(dims, |row, columns, [sum, sum_sq]: &mut [Vec<T>; 2]| {
        if rows.holds(row.start, c) {
            simd::add_shifted_sums([sum, sum_sq], &x[row], &shift[columns]);
        }
    });
    let (mut means, mut vars) = (Vec::with_capacity(c), Vec::with_capacity(c));
    let stats = [&mut means, &mut vars];
    let map = batch_maps(shift, &sums, rows.count, [gamma, beta], epsilon, stats);
    let mut out = output(dims.len());
    per_sample(&mut out, dims, |out, at| match rows.holds(at.start, c) {
        true => map.apply(out, &x[at], 1),
        false => out.fill(MaybeUninit::new(T::default())),
    });
    // SAFETY: `per_sample` hands every row's values of `out` to `apply` or `fill`, which write
    // them all.
    (unsafe { written(out) }, means, vars)
}

/// The backward of [`masked_batch_norm`]: `(dx, dgamma, dbeta)` from the output gradient `dy`
/// and the variances the forward returned. A padded row's `dx` is zero, and its `dy` is not
/// read.
pub(crate) fn masked_batch_norm_backward<T: Real>(
    x: &[T],
    valid: &[bool],
    dy: &[T],
    [gamma, var]: [&[T]; 2],
    c: usize,
    epsilon: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (rows, dims) = ValidRows::new(valid, x, &[gamma, var], c);
    assert_eq!(dy.len(), x.len(), "output gradient of {dims:?}");
    if dims.len() == 0 {
        return nothing(c);
    }
    let shift = rows.shift(x, c);
    let sums = dense_sums(dims, |row, columns, sums: &mut [Vec<T>; 3]| {
        if rows.holds(row.start, c) {
            let [sum_dy, sum_dy_d, sum_d] = sums;
            let (x, dy) = (&x[row.clone()], &dy[row]);
            simd::add_shifted_grad_sums([sum_dy, sum_dy_d, sum_d], dy, x, &shift[columns]);
        }
    });
    let (map, dgamma, dbeta) = batch_gradient_maps(shift, &sums, rows.count, gamma, var, epsilon);
    let mut dx = output(dims.len());
    per_sample(&mut dx, dims, |dx, at| match rows.holds(at.start, c) {
        true => map.apply(dx, &x[at.clone()], &dy[at], 1),
        false => dx.fill(MaybeUninit::new(T::default())),
    });
    // SAFETY: `per_sample` hands every row's values of `dx` to `apply` or `fill`, which write
    // them all.
    (unsafe { written(dx) }, dgamma, dbeta)
}
