//! The LSTM cell's element-wise steps on the CPU, one pass each way.
//!
//! Every value is computed with the operations, in the order, that burn's composed ops on flex
//! use (flex's `sigmoid`, `f32::tanh`, the autodiff backward of `sigmoid`, `tanh` and `*`), so
//! the fused cell gives the composed cell's bits, not only its values (`tests.rs` compares
//! them bit for bit): an experiment's records do not depend on which path trained it.

use rayon::prelude::*;

/// Rows of this many values or more are shared out over rayon's threads: below it, splitting
/// costs more than the arithmetic (a row is a sample's `4 * hidden` gates).
const PARALLEL_VALUES: usize = 1 << 14;

/// A float the cell runs in, with flex's own `sigmoid` and `tanh`.
pub(crate) trait Real:
    burn::tensor::Element
    + bytemuck::Pod
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Neg<Output = Self>
    + PartialOrd
{
    const ZERO: Self;
    const ONE: Self;
    fn sigmoid(self) -> Self;
    fn tanh(self) -> Self;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;

            /// Flex's `sigmoid_f32` / `sigmoid_f64`: the `exp` of a non-positive number only.
            fn sigmoid(self) -> Self {
                if self >= 0.0 {
                    1.0 / (1.0 + (-self).exp())
                } else {
                    let e = self.exp();
                    e / (1.0 + e)
                }
            }

            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
        }
    };
}
real!(f32);
real!(f64);

/// The gradient through a sigmoid of output `s`: flex's `sigmoid_backward`, `g * s * (1 - s)`.
fn sigmoid_grad<T: Real>(s: T, g: T) -> T {
    g * s * (T::ONE - s)
}

/// The gradient through a tanh of output `t`: burn-autodiff's `grad * (-(t * t) + 1)`.
fn tanh_grad<T: Real>(t: T, g: T) -> T {
    g * (-(t * t) + T::ONE)
}

/// Fills two outputs row by row: `row(i, a_i, b_i)` gets row `i` of `a` (`a_width` values) and
/// of `b` (`b_width`), on several threads when the rows are large. Small calls stay on the
/// calling thread: a step of a small batch is a few hundred values, and handing them to rayon's
/// pool would cost more than computing them.
fn fill_rows<T: Real>(
    (a, a_width): (&mut [T], usize),
    (b, b_width): (&mut [T], usize),
    row: impl Fn(usize, &mut [T], &mut [T]) + Sync,
) {
    if a_width == 0 || b_width == 0 {
        return;
    }
    if a.len() + b.len() >= PARALLEL_VALUES {
        let rows = a.par_chunks_mut(a_width).zip(b.par_chunks_mut(b_width));
        rows.enumerate().for_each(|(i, (a, b))| row(i, a, b));
    } else {
        let rows = a.chunks_mut(a_width).zip(b.chunks_mut(b_width));
        rows.enumerate().for_each(|(i, (a, b))| row(i, a, b));
    }
}

/// `gates: [N, 4H]` (pre-activations of `i, f, g, o`), `c: [N, H]` ->
/// `(c' = σ(f) c + σ(i) tanh(g): [N, H], saved: [N, 3H])`, `saved` holding `σ(i), σ(f),
/// tanh(g)` for the backward.
pub(crate) fn cell_state<T: Real>(gates: &[T], c: &[T], hidden: usize) -> (Vec<T>, Vec<T>) {
    let mut c_new = vec![T::ZERO; c.len()];
    let mut saved = vec![T::ZERO; 3 * c.len()];
    fill_rows(
        (&mut c_new, hidden),
        (&mut saved, 3 * hidden),
        |n, c_new, saved| {
            let gates = &gates[n * 4 * hidden..][..4 * hidden];
            let c = &c[n * hidden..][..hidden];
            let (si, rest) = saved.split_at_mut(hidden);
            let (sf, tg) = rest.split_at_mut(hidden);
            for j in 0..hidden {
                si[j] = gates[j].sigmoid();
                sf[j] = gates[hidden + j].sigmoid();
                tg[j] = gates[2 * hidden + j].tanh();
                c_new[j] = sf[j] * c[j] + si[j] * tg[j];
            }
        },
    );
    (c_new, saved)
}

/// The backward of [`cell_state`]: `(saved, c, dc': [N, H])` -> `(dgates: [N, 4H], dc: [N, H])`,
/// the `o` columns of `dgates` zero.
pub(crate) fn cell_state_backward<T: Real>(
    saved: &[T],
    c: &[T],
    dc_new: &[T],
    hidden: usize,
) -> (Vec<T>, Vec<T>) {
    let mut dgates = vec![T::ZERO; 4 * c.len()];
    let mut dc = vec![T::ZERO; c.len()];
    fill_rows(
        (&mut dgates, 4 * hidden),
        (&mut dc, hidden),
        |n, dgates, dc| {
            let saved = &saved[n * 3 * hidden..][..3 * hidden];
            let (si, sf, tg) = (
                &saved[..hidden],
                &saved[hidden..2 * hidden],
                &saved[2 * hidden..],
            );
            let c = &c[n * hidden..][..hidden];
            let dc_new = &dc_new[n * hidden..][..hidden];
            for j in 0..hidden {
                // `c' = a + b` hands `dc'` to both products, `a = σ(f) c` and `b = σ(i) tanh(g)`.
                let grad = dc_new[j];
                dgates[j] = sigmoid_grad(si[j], grad * tg[j]);
                dgates[hidden + j] = sigmoid_grad(sf[j], grad * c[j]);
                dgates[2 * hidden + j] = tanh_grad(tg[j], grad * si[j]);
                dc[j] = grad * sf[j];
            }
        },
    );
    (dgates, dc)
}

/// `gates: [N, 4H]`, `c: [N, H]` -> `(h = σ(o) tanh(c): [N, H], saved: [N, 2H])`, `saved`
/// holding `σ(o), tanh(c)` for the backward.
pub(crate) fn output<T: Real>(gates: &[T], c: &[T], hidden: usize) -> (Vec<T>, Vec<T>) {
    let mut h = vec![T::ZERO; c.len()];
    let mut saved = vec![T::ZERO; 2 * c.len()];
    fill_rows((&mut h, hidden), (&mut saved, 2 * hidden), |n, h, saved| {
        let o = &gates[n * 4 * hidden + 3 * hidden..][..hidden];
        let c = &c[n * hidden..][..hidden];
        let (so, tc) = saved.split_at_mut(hidden);
        for j in 0..hidden {
            so[j] = o[j].sigmoid();
            tc[j] = c[j].tanh();
            h[j] = so[j] * tc[j];
        }
    });
    (h, saved)
}

/// The backward of [`output`]: `(saved, dh: [N, H])` -> `(dgates: [N, 4H], dc: [N, H])`, only
/// the `o` columns of `dgates` non-zero.
pub(crate) fn output_backward<T: Real>(saved: &[T], dh: &[T], hidden: usize) -> (Vec<T>, Vec<T>) {
    let mut dgates = vec![T::ZERO; 4 * dh.len()];
    let mut dc = vec![T::ZERO; dh.len()];
    fill_rows(
        (&mut dgates, 4 * hidden),
        (&mut dc, hidden),
        |n, dgates, dc| {
            let saved = &saved[n * 2 * hidden..][..2 * hidden];
            let (so, tc) = saved.split_at(hidden);
            let dh = &dh[n * hidden..][..hidden];
            for j in 0..hidden {
                dgates[3 * hidden + j] = sigmoid_grad(so[j], dh[j] * tc[j]);
                dc[j] = tanh_grad(tc[j], dh[j] * so[j]);
            }
        },
    );
    (dgates, dc)
}
