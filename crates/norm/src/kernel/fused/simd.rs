//! The inner loops of the fused kernels, written with explicit vectors: `macerator` picks the
//! widest instruction set the CPU has at run time (SSE4.2, AVX2, AVX-512, NEON), the same way
//! burn's flex backend does. Left to the compiler, the sums vectorize across their two or three
//! accumulators instead of across the data, and only for the baseline x86-64 (SSE2) target:
//! three to six times slower.
//!
//! Every function works on one contiguous segment; the callers spread segments over the cores.
//! A sum keeps [`PARTIALS`] partial sums in `T` whatever the vector width (position `i` goes
//! into partial `i % PARTIALS`), over blocks of [`BLOCK`] values, and adds the partials and the
//! blocks in `f64` in index order, so `f32` input keeps its digits over long rows and the
//! additions happen in the same order on every CPU: SSE, AVX2, AVX-512, NEON and the scalar
//! fallback give the same bits (a test runs every instruction set this CPU has). The other
//! functions work value by value (a multiply and an add, never fused into one rounding), so
//! they give the same bits on every CPU too.

use std::mem::MaybeUninit;

use macerator::{
    Scalar, Simd, VAdd, VDiv, VMul, VOrd, VSelect, VSub, Vector, vload_unaligned, with_simd,
};

/// How many values a block of vector sums holds before it is added into the `f64` totals.
const BLOCK: usize = 512;

/// How many partial sums a horizontal sum keeps: a multiple of every lane count (`f32`: 4 for
/// SSE and NEON, 8 for AVX2, 16 for AVX-512; `f64` half as many; 1 for the scalar fallback),
/// so that each partial sum takes the same values in the same order whatever the width.
const PARTIALS: usize = 16;

/// What the vector loops need of a float type.
pub(crate) trait Lanes:
    Scalar + PartialOrd + VAdd + VSub + VMul + VDiv + VOrd + VSelect
{
    const ONE: Self;

    fn to_f64(self) -> f64;

    /// `1 / (1 + exp(-self))`, with the same bits as every lane of [`Lanes::sigmoid_lanes`].
    fn sigmoid(self) -> Self;

    /// [`Lanes::sigmoid`] of every lane.
    fn sigmoid_lanes<S: Simd>(z: Vector<S, Self>) -> Vector<S, Self>;
}

impl Lanes for f32 {
    const ONE: Self = 1.0;

    fn to_f64(self) -> f64 {
        self as f64
    }

    #[inline(always)]
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + exp_f32(-self))
    }

    #[inline(always)]
    fn sigmoid_lanes<S: Simd>(z: Vector<S, Self>) -> Vector<S, Self> {
        let one = 1.0f32.splat::<S>();
        one / (one + exp_f32_lanes::<S>(0.0f32.splat::<S>() - z))
    }
}

impl Lanes for f64 {
    const ONE: Self = 1.0;

    fn to_f64(self) -> f64 {
        self
    }

    /// libm's `exp`: `f64` is for the tests' references, where the last bit matters less than
    /// the digits.
    #[inline(always)]
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + (-self).exp())
    }

    #[inline(always)]
    fn sigmoid_lanes<S: Simd>(z: Vector<S, Self>) -> Vector<S, Self> {
        let lanes = f64::lanes::<S>();
        let mut values = [0.0f64; 8];
        write(&mut values[..lanes], z);
        for value in &mut values[..lanes] {
            *value = value.sigmoid();
        }
        load::<S, f64>(&values[..lanes])
    }
}

/// The range [`exp_f32`] clamps its argument to: `exp` of its ends is a normal `f32`, and
/// `2^n` below stays a normal power of two.
const EXP_RANGE: [f32; 2] = [-87.0, 88.0];
/// `1.5 * 2^23`: adding it to a float of magnitude below `2^22` rounds that float to the
/// nearest integer (ties to even), which then sits in the sum's low mantissa bits.
const ROUNDER: f32 = 12_582_912.0;
const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` in two parts (Cody and Waite): `n * LN2_HI` is exact for the `n` here.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' minimax polynomial for `(exp(r) - 1 - r) / r^2` on `|r| <= ln(2) / 2`, highest
/// power first.
const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];

/// `exp(x)` in `f32` to about 2 units in the last place (Cephes' `expf`), written as single
/// additions and multiplications so that [`exp_f32_lanes`] gives the same bits on every
/// instruction set: `exp(x) = 2^n * exp(r)` with `n` the integer nearest `x / ln 2`.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(EXP_RANGE[0], EXP_RANGE[1]);
    let rounded = x * LOG2_E + ROUNDER;
    let n = rounded - ROUNDER;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = EXP_POLY[0];
    for c in &EXP_POLY[1..] {
        p = p * r + c;
    }
    let exp_r = p * (r * r) + r + 1.0;
    // The low bits of `rounded` hold `n`; `n + 127` shifted into the exponent field is `2^n`.
    exp_r * f32::from_bits(rounded.to_bits().wrapping_add(127) << 23)
}

/// [`exp_f32`] of every lane.
#[inline(always)]
fn exp_f32_lanes<S: Simd>(x: Vector<S, f32>) -> Vector<S, f32> {
    let splat = |v: f32| v.splat::<S>();
    let x = x.max(splat(EXP_RANGE[0])).min(splat(EXP_RANGE[1]));
    let rounded = x * splat(LOG2_E) + splat(ROUNDER);
    let n = rounded - splat(ROUNDER);
    let r = (x - n * splat(LN2_HI)) - n * splat(LN2_LO);
    let mut p = splat(EXP_POLY[0]);
    for &c in &EXP_POLY[1..] {
        p = p * r + splat(c);
    }
    let exp_r = p * (r * r) + r + splat(1.0);
    let power = (rounded.reinterpret::<u32>() + 127u32.splat::<S>()) << 23;
    exp_r * power.reinterpret::<f32>()
}

/// The vector at the start of `values`, which holds at least one vector's worth.
#[inline(always)]
fn load<S: Simd, T: Lanes>(values: &[T]) -> Vector<S, T> {
    assert!(values.len() >= T::lanes::<S>());
    // SAFETY: `values` holds a whole vector, checked above; the load needs no alignment.
    unsafe { vload_unaligned::<S, T>(values.as_ptr()) }
}

/// Writes `value` at the start of `out`, which holds at least one vector's worth.
#[inline(always)]
fn store<S: Simd, T: Lanes>(out: &mut [MaybeUninit<T>], value: Vector<S, T>) {
    assert!(out.len() >= T::lanes::<S>());
    // SAFETY: `out` holds a whole vector, checked above; `MaybeUninit<T>` has `T`'s layout and
    // writing initializes it; the store needs no alignment.
    unsafe { macerator::vstore_unaligned::<S, T>(out.as_mut_ptr().cast::<T>(), value) }
}

/// Writes `value` at the start of `out`, which holds at least one vector's worth.
#[inline(always)]
fn write<S: Simd, T: Lanes>(out: &mut [T], value: Vector<S, T>) {
    assert!(out.len() >= T::lanes::<S>());
    // SAFETY: `out` holds a whole vector, checked above; the store needs no alignment.
    unsafe { macerator::vstore_unaligned::<S, T>(out.as_mut_ptr(), value) }
}

/// Adds `value` into the vector at the start of `sums`, which holds at least one vector's worth.
#[inline(always)]
fn add_into<S: Simd, T: Lanes>(sums: &mut [T], value: Vector<S, T>) {
    let sum = load::<S, T>(sums) + value;
    write(sums, sum);
}

/// `K` sums over positions `0..len` in an order that does not depend on the vector width:
/// `terms(i)` gives the `K` terms of the vector of positions `i..i + lanes`, `tail(i)` those
/// of position `i` alone (in `f64`), for the positions after the last whole [`PARTIALS`].
#[inline(always)]
fn fixed_order_sums<S: Simd, T: Lanes, const K: usize>(
    len: usize,
    terms: impl Fn(usize) -> [Vector<S, T>; K],
    tail: impl Fn(usize) -> [f64; K],
) -> [f64; K] {
    let lanes = T::lanes::<S>();
    assert!(
        PARTIALS.is_multiple_of(lanes),
        "{lanes} lanes do not divide {PARTIALS}"
    );
    let vectors = PARTIALS / lanes;
    let whole = len / PARTIALS * PARTIALS;
    let mut totals = [0.0f64; K];
    for start in (0..whole).step_by(BLOCK) {
        let zero = T::default().splat::<S>();
        // Partial sums of term `q` in `partials[q][..vectors]`, lane by lane.
        let mut partials = [[zero; PARTIALS]; K];
        for group in (start..(start + BLOCK).min(whole)).step_by(PARTIALS) {
            for j in 0..vectors {
                let terms = terms(group + j * lanes);
                for (partial, term) in partials.iter_mut().zip(terms) {
                    partial[j] += term;
                }
            }
        }
        for (total, partial) in totals.iter_mut().zip(&partials) {
            let mut values = [T::default(); PARTIALS];
            for (j, &vector) in partial[..vectors].iter().enumerate() {
                write(&mut values[j * lanes..], vector);
            }
            *total += values.iter().map(|v| v.to_f64()).sum::<f64>();
        }
    }
    for i in whole..len {
        for (total, term) in totals.iter_mut().zip(tail(i)) {
            *total += term;
        }
    }
    totals
}

/// `[Σ (x - k), Σ (x - k)^2]` over `x`.
#[with_simd]
pub(crate) fn shifted_sums<S: Simd, T: Lanes>(x: &[T], k: T) -> [f64; 2] {
    let kv = k.splat::<S>();
    let terms = |i: usize| {
        let d = load::<S, T>(&x[i..]) - kv;
        [d, d * d]
    };
    let tail = |i: usize| {
        let d = (x[i] - k).to_f64();
        [d, d * d]
    };
    fixed_order_sums(x.len(), terms, tail)
}

/// `[Σ dy, Σ dy (x - k), Σ (x - k)]` over `dy` and `x`, of the same length.
#[with_simd]
pub(crate) fn shifted_grad_sums<S: Simd, T: Lanes>(dy: &[T], x: &[T], k: T) -> [f64; 3] {
    assert_eq!(dy.len(), x.len());
    let kv = k.splat::<S>();
    let terms = |i: usize| {
        let g = load::<S, T>(&dy[i..]);
        let d = load::<S, T>(&x[i..]) - kv;
        [g, g * d, d]
    };
    let tail = |i: usize| {
        let (g, d) = (dy[i].to_f64(), (x[i] - k).to_f64());
        [g, g * d, d]
    };
    fixed_order_sums(x.len(), terms, tail)
}

/// `out = ((x - k) - r) * scale + shift`: a segment normalized by a centre kept as one of its
/// values `k` and the residual `r`, then scaled and shifted.
#[with_simd]
pub(crate) fn affine<S: Simd, T: Lanes>(out: &mut [MaybeUninit<T>], x: &[T], coefficients: [T; 4]) {
    let [k, r, scale, shift] = coefficients;
    assert_eq!(out.len(), x.len());
    let lanes = T::lanes::<S>();
    let whole = x.len() / lanes * lanes;
    let [kv, rv, scale_v, shift_v] = [k, r, scale, shift].map(|v| v.splat::<S>());
    let (out_head, out_tail) = out.split_at_mut(whole);
    for (o, chunk) in out_head.chunks_exact_mut(lanes).zip(x.chunks_exact(lanes)) {
        let v = load::<S, T>(chunk);
        store(o, ((v - kv) - rv) * scale_v + shift_v);
    }
    for (o, &v) in out_tail.iter_mut().zip(&x[whole..]) {
        o.write(((v - k) - r) * scale + shift);
    }
}

/// `dx = dy * per_dy + ((x - k) - r) * slope + offset`: the input gradient of a normalized
/// segment, given the coefficients its statistics give.
#[with_simd]
pub(crate) fn gradient<S: Simd, T: Lanes>(
    dx: &mut [MaybeUninit<T>],
    x: &[T],
    dy: &[T],
    coefficients: [T; 5],
) {
    let [k, r, per_dy, slope, offset] = coefficients;
    assert!(dx.len() == x.len() && dy.len() == x.len());
    let lanes = T::lanes::<S>();
    let whole = x.len() / lanes * lanes;
    let [kv, rv, per_dy_v, slope_v, offset_v] =
        [k, r, per_dy, slope, offset].map(|v| v.splat::<S>());
    let (dx_head, dx_tail) = dx.split_at_mut(whole);
    let inputs = x.chunks_exact(lanes).zip(dy.chunks_exact(lanes));
    for (d, (chunk_x, chunk_dy)) in dx_head.chunks_exact_mut(lanes).zip(inputs) {
        let centred = (load::<S, T>(chunk_x) - kv) - rv;
        let g = load::<S, T>(chunk_dy);
        store(d, g * per_dy_v + centred * slope_v + offset_v);
    }
    for (d, (&v, &g)) in dx_tail.iter_mut().zip(x[whole..].iter().zip(&dy[whole..])) {
        d.write(g * per_dy + ((v - k) - r) * slope + offset);
    }
}

/// `out_i = (x_i - centre_i) * scale_i + shift_i`: a dense row, one coefficient set per value.
#[with_simd]
pub(crate) fn affine_each<S: Simd, T: Lanes>(
    out: &mut [MaybeUninit<T>],
    x: &[T],
    centre: &[T],
    scale: &[T],
    shift: &[T],
) {
    let n = x.len();
    assert!(out.len() == n && centre.len() == n && scale.len() == n && shift.len() == n);
    let lanes = T::lanes::<S>();
    let whole = n / lanes * lanes;
    let mut i = 0;
    while i < whole {
        let v = load::<S, T>(&x[i..]) - load::<S, T>(&centre[i..]);
        store(
            &mut out[i..],
            v * load::<S, T>(&scale[i..]) + load::<S, T>(&shift[i..]),
        );
        i += lanes;
    }
    for i in whole..n {
        out[i].write((x[i] - centre[i]) * scale[i] + shift[i]);
    }
}

/// `dx_i = dy_i * per_dy_i + (x_i - centre_i) * slope_i + offset_i`: a dense row's input
/// gradient, one coefficient set per value; `coefficients` is `[centre, per_dy, slope, offset]`.
#[with_simd]
pub(crate) fn gradient_each<S: Simd, T: Lanes>(
    dx: &mut [MaybeUninit<T>],
    x: &[T],
    dy: &[T],
    coefficients: [&[T]; 4],
) {
    let [centre, per_dy, slope, offset] = coefficients;
    let n = x.len();
    assert!(dx.len() == n && dy.len() == n && coefficients.iter().all(|c| c.len() == n));
    let lanes = T::lanes::<S>();
    let whole = n / lanes * lanes;
    let mut i = 0;
    while i < whole {
        let centred = load::<S, T>(&x[i..]) - load::<S, T>(&centre[i..]);
        let from_dy = load::<S, T>(&dy[i..]) * load::<S, T>(&per_dy[i..]);
        let value = from_dy + centred * load::<S, T>(&slope[i..]) + load::<S, T>(&offset[i..]);
        store(&mut dx[i..], value);
        i += lanes;
    }
    for i in whole..n {
        dx[i].write(dy[i] * per_dy[i] + (x[i] - centre[i]) * slope[i] + offset[i]);
    }
}

/// `sum_i += x_i - k_i`, `sum_sq_i += (x_i - k_i)^2`: one dense row added into per-channel
/// accumulators.
#[with_simd]
pub(crate) fn add_shifted_sums<S: Simd, T: Lanes>(sums: [&mut [T]; 2], x: &[T], k: &[T]) {
    let [sum, sum_sq] = sums;
    let n = x.len();
    assert!(sum.len() == n && sum_sq.len() == n && k.len() == n);
    let lanes = T::lanes::<S>();
    let whole = n / lanes * lanes;
    let mut i = 0;
    while i < whole {
        let d = load::<S, T>(&x[i..]) - load::<S, T>(&k[i..]);
        add_into(&mut sum[i..], d);
        add_into(&mut sum_sq[i..], d * d);
        i += lanes;
    }
    for i in whole..n {
        let d = x[i] - k[i];
        sum[i] = sum[i] + d;
        sum_sq[i] = sum_sq[i] + d * d;
    }
}

/// `sum_dy_i += dy_i`, `sum_dy_d_i += dy_i (x_i - k_i)`, `sum_d_i += x_i - k_i`: one dense
/// row added into per-channel accumulators.
#[with_simd]
pub(crate) fn add_shifted_grad_sums<S: Simd, T: Lanes>(
    sums: [&mut [T]; 3],
    dy: &[T],
    x: &[T],
    k: &[T],
) {
    let [sum_dy, sum_dy_d, sum_d] = sums;
    let n = x.len();
    assert!(dy.len() == n && k.len() == n);
    assert!(sum_dy.len() == n && sum_dy_d.len() == n && sum_d.len() == n);
    let lanes = T::lanes::<S>();
    let whole = n / lanes * lanes;
    let mut i = 0;
    while i < whole {
        let g = load::<S, T>(&dy[i..]);
        let d = load::<S, T>(&x[i..]) - load::<S, T>(&k[i..]);
        add_into(&mut sum_dy[i..], g);
        add_into(&mut sum_dy_d[i..], g * d);
        add_into(&mut sum_d[i..], d);
        i += lanes;
    }
    for i in whole..n {
        let d = x[i] - k[i];
        sum_dy[i] = sum_dy[i] + dy[i];
        sum_dy_d[i] = sum_dy_d[i] + dy[i] * d;
        sum_d[i] = sum_d[i] + d;
    }
}

/// `sum_dy_i += dy_i`, `sum_dy_x_hat_i += dy_i * ((x_i - k) - r) * rstd`: a dense row's share
/// of the parameter gradients, the row normalized by one centre and `rstd`; `coefficients` is
/// `[k, r, rstd]`.
#[with_simd]
pub(crate) fn add_param_grads<S: Simd, T: Lanes>(
    sums: [&mut [T]; 2],
    dy: &[T],
    x: &[T],
    coefficients: [T; 3],
) {
    let [sum_dy, sum_dy_x_hat] = sums;
    let [k, r, rstd] = coefficients;
    let n = x.len();
    assert!(dy.len() == n && sum_dy.len() == n && sum_dy_x_hat.len() == n);
    let lanes = T::lanes::<S>();
    let whole = n / lanes * lanes;
    let [kv, rv, rstd_v] = [k, r, rstd].map(|v| v.splat::<S>());
    let mut i = 0;
    while i < whole {
        let g = load::<S, T>(&dy[i..]);
        let x_hat = ((load::<S, T>(&x[i..]) - kv) - rv) * rstd_v;
        add_into(&mut sum_dy[i..], g);
        add_into(&mut sum_dy_x_hat[i..], g * x_hat);
        i += lanes;
    }
    for i in whole..n {
        sum_dy[i] = sum_dy[i] + dy[i];
        sum_dy_x_hat[i] = sum_dy_x_hat[i] + dy[i] * (((x[i] - k) - r) * rstd);
    }
}

/// `out_i = ((x_i - k) - r) * (rstd * gamma_i) + beta_i`: a dense row normalized by one centre
/// and `rstd`, then scaled and shifted per value; `coefficients` is `[k, r, rstd]`.
#[with_simd]
pub(crate) fn normalize_each<S: Simd, T: Lanes>(
    out: &mut [MaybeUninit<T>],
    x: &[T],
    coefficients: [T; 3],
    gamma: &[T],
    beta: &[T],
) {
    let [k, r, rstd] = coefficients;
    let n = x.len();
    assert!(out.len() == n && gamma.len() == n && beta.len() == n);
    let lanes = T::lanes::<S>();
    let whole = n / lanes * lanes;
    let [kv, rv, rstd_v] = [k, r, rstd].map(|v| v.splat::<S>());
    let mut i = 0;
    while i < whole {
        let centred = (load::<S, T>(&x[i..]) - kv) - rv;
        let scale = rstd_v * load::<S, T>(&gamma[i..]);
        store(&mut out[i..], centred * scale + load::<S, T>(&beta[i..]));
        i += lanes;
    }
    for i in whole..n {
        out[i].write(((x[i] - k) - r) * (rstd * gamma[i]) + beta[i]);
    }
}

/// `out = x * sigmoid(v * x) * scale + shift`: EvoNorm-S0's gated segment, scaled and shifted;
/// `coefficients` is `[v, scale, shift]`.
#[with_simd]
pub(crate) fn gated_affine<S: Simd, T: Lanes>(
    out: &mut [MaybeUninit<T>],
    x: &[T],
    coefficients: [T; 3],
) {
    let [v, scale, shift] = coefficients;
    assert_eq!(out.len(), x.len());
    let lanes = T::lanes::<S>();
    let whole = x.len() / lanes * lanes;
    let [v_v, scale_v, shift_v] = [v, scale, shift].map(|c| c.splat::<S>());
    let (out_head, out_tail) = out.split_at_mut(whole);
    for (o, chunk) in out_head.chunks_exact_mut(lanes).zip(x.chunks_exact(lanes)) {
        let x = load::<S, T>(chunk);
        store(o, x * T::sigmoid_lanes::<S>(v_v * x) * scale_v + shift_v);
    }
    for (o, &x) in out_tail.iter_mut().zip(&x[whole..]) {
        o.write(x * (v * x).sigmoid() * scale + shift);
    }
}

/// `gate_i = sigmoid(v * x_i)`.
#[with_simd]
pub(crate) fn gates<S: Simd, T: Lanes>(gate: &mut [T], x: &[T], v: T) {
    assert_eq!(gate.len(), x.len());
    let lanes = T::lanes::<S>();
    let whole = x.len() / lanes * lanes;
    let v_v = v.splat::<S>();
    let (gate_head, gate_tail) = gate.split_at_mut(whole);
    for (g, chunk) in gate_head.chunks_exact_mut(lanes).zip(x.chunks_exact(lanes)) {
        write(g, T::sigmoid_lanes::<S>(v_v * load::<S, T>(chunk)));
    }
    for (g, &x) in gate_tail.iter_mut().zip(&x[whole..]) {
        *g = (v * x).sigmoid();
    }
}

/// `[Σ dy x gate, Σ dy, Σ (x - k), Σ dy x^2 gate (1 - gate)]` over a gated segment: the last
/// is its share of the gradient of its slope `v`.
#[with_simd]
pub(crate) fn gated_grad_sums<S: Simd, T: Lanes>(dy: &[T], x: &[T], gate: &[T], k: T) -> [f64; 4] {
    assert!(dy.len() == x.len() && gate.len() == x.len());
    let one = T::ONE;
    let [kv, one_v] = [k, one].map(|c| c.splat::<S>());
    let terms = |i: usize| {
        let (g, x, s) = (
            load::<S, T>(&dy[i..]),
            load::<S, T>(&x[i..]),
            load::<S, T>(&gate[i..]),
        );
        [g * (x * s), g, x - kv, g * (x * x) * (s * (one_v - s))]
    };
    let tail = |i: usize| {
        let (g, x, s) = (dy[i], x[i], gate[i]);
        [g * (x * s), g, x - k, g * (x * x) * (s * (one - s))].map(T::to_f64)
    };
    fixed_order_sums(x.len(), terms, tail)
}

/// `dx = dy * per_dy * (gate + v x gate (1 - gate)) - ((x - k) - r) * slope`: the input
/// gradient of a gated segment; `coefficients` is `[v, per_dy, k, r, slope]`.
#[with_simd]
pub(crate) fn gated_gradient<S: Simd, T: Lanes>(
    dx: &mut [MaybeUninit<T>],
    x: &[T],
    dy: &[T],
    gate: &[T],
    coefficients: [T; 5],
) {
    let [v, per_dy, k, r, slope] = coefficients;
    let n = x.len();
    assert!(dx.len() == n && dy.len() == n && gate.len() == n);
    let lanes = T::lanes::<S>();
    let whole = n / lanes * lanes;
    let one = T::ONE;
    let [v_v, per_dy_v, kv, rv, slope_v, one_v] =
        [v, per_dy, k, r, slope, one].map(|c| c.splat::<S>());
    let mut i = 0;
    while i < whole {
        let (x, s) = (load::<S, T>(&x[i..]), load::<S, T>(&gate[i..]));
        let local = s + v_v * x * s * (one_v - s);
        let value = load::<S, T>(&dy[i..]) * per_dy_v * local - ((x - kv) - rv) * slope_v;
        store(&mut dx[i..], value);
        i += lanes;
    }
    for i in whole..n {
        let (x, s) = (x[i], gate[i]);
        let local = s + v * x * s * (one - s);
        dx[i].write(dy[i] * per_dy * local - ((x - k) - r) * slope);
    }
}

/// EvoNorm-B0's divisor of one value: `max(a, v x + b)`, `a` from the batch variance and `b`
/// from the instance variance; and whether `a` is the larger (the batch branch, ties included).
#[inline(always)]
fn b0_divisor<T: Lanes>(x: T, [a, v, b]: [T; 3]) -> (T, bool) {
    let per_sample = v * x + b;
    match a >= per_sample {
        true => (a, true),
        false => (per_sample, false),
    }
}

/// [`b0_divisor`] of every lane, and `v x + b` (the batch branch's lanes are those where `a`
/// is at least that).
#[inline(always)]
fn b0_divisor_lanes<S: Simd, T: Lanes>(
    x: Vector<S, T>,
    [a, v, b]: [Vector<S, T>; 3],
) -> (Vector<S, T>, Vector<S, T>) {
    let per_sample = v * x + b;
    (a.ge(per_sample).select(a, per_sample), per_sample)
}

/// `out = x / max(a, v x + b) * gamma + beta`: EvoNorm-B0 on a segment of one (sample,
/// channel); `coefficients` is `[a, v, b, gamma, beta]`.
#[with_simd]
pub(crate) fn b0_affine<S: Simd, T: Lanes>(
    out: &mut [MaybeUninit<T>],
    x: &[T],
    coefficients: [T; 5],
) {
    let [a, v, b, gamma, beta] = coefficients;
    assert_eq!(out.len(), x.len());
    let lanes = T::lanes::<S>();
    let whole = x.len() / lanes * lanes;
    let [a_v, v_v, b_v, gamma_v, beta_v] = coefficients.map(|c| c.splat::<S>());
    let (out_head, out_tail) = out.split_at_mut(whole);
    for (o, chunk) in out_head.chunks_exact_mut(lanes).zip(x.chunks_exact(lanes)) {
        let x = load::<S, T>(chunk);
        let (d, _) = b0_divisor_lanes::<S, T>(x, [a_v, v_v, b_v]);
        store(o, x / d * gamma_v + beta_v);
    }
    for (o, &x) in out_tail.iter_mut().zip(&x[whole..]) {
        let (d, _) = b0_divisor(x, [a, v, b]);
        o.write(x / d * gamma + beta);
    }
}

/// With `g = dy gamma`, `d = max(a, v x + b)` and `q = -g x / d^2` (the gradient reaching `d`):
/// `[Σ q over the batch branch, Σ q over the other, Σ q x over the other, Σ dy x / d, Σ dy]`
/// over a segment; `coefficients` is `[a, v, b, gamma]`.
#[with_simd]
pub(crate) fn b0_grad_sums<S: Simd, T: Lanes>(dy: &[T], x: &[T], coefficients: [T; 4]) -> [f64; 5] {
    let [a, v, b, gamma] = coefficients;
    assert_eq!(dy.len(), x.len());
    let [a_v, v_v, b_v, gamma_v] = coefficients.map(|c| c.splat::<S>());
    let zero = T::default().splat::<S>();
    let terms = |i: usize| {
        let (g, x) = (load::<S, T>(&dy[i..]), load::<S, T>(&x[i..]));
        let (d, per_sample) = b0_divisor_lanes::<S, T>(x, [a_v, v_v, b_v]);
        let q = (zero - g * gamma_v * x) / (d * d);
        let q_per_sample = a_v.ge(per_sample).select(zero, q);
        let q_batch = a_v.ge(per_sample).select(q, zero);
        [q_batch, q_per_sample, q_per_sample * x, g * (x / d), g]
    };
    let tail = |i: usize| {
        let (g, x) = (dy[i], x[i]);
        let (d, batch) = b0_divisor(x, [a, v, b]);
        let q = (T::default() - g * gamma * x) / (d * d);
        let per_sample = if batch { T::default() } else { q };
        let in_batch = if batch { q } else { T::default() };
        [in_batch, per_sample, per_sample * x, g * (x / d), g].map(T::to_f64)
    };
    fixed_order_sums(x.len(), terms, tail)
}

/// `dx = g / d + v q (other branch) + ((x - k_i) - r_i) slope_i + (x - mean_b) slope_b`:
/// EvoNorm-B0's input gradient on a segment, `g`, `d` and `q` as in [`b0_grad_sums`], the last
/// two terms through the instance variance (the segment centred as `(x - k_i) - r_i`, exactly
/// zero for a segment of one value) and the batch variance; `coefficients` is
/// `[a, v, b, gamma, k_i, r_i, slope_i, mean_b, slope_b]`.
#[with_simd]
pub(crate) fn b0_gradient<S: Simd, T: Lanes>(
    dx: &mut [MaybeUninit<T>],
    x: &[T],
    dy: &[T],
    coefficients: [T; 9],
) {
    let [a, v, b, gamma, k_i, r_i, slope_i, mean_b, slope_b] = coefficients;
    let n = x.len();
    assert!(dx.len() == n && dy.len() == n);
    let lanes = T::lanes::<S>();
    let whole = n / lanes * lanes;
    let [
        a_v,
        v_v,
        b_v,
        gamma_v,
        k_i_v,
        r_i_v,
        slope_i_v,
        mean_b_v,
        slope_b_v,
    ] = coefficients.map(|c| c.splat::<S>());
    let zero = T::default().splat::<S>();
    let mut i = 0;
    while i < whole {
        let (dy, x) = (load::<S, T>(&dy[i..]), load::<S, T>(&x[i..]));
        let (d, per_sample) = b0_divisor_lanes::<S, T>(x, [a_v, v_v, b_v]);
        let g = dy * gamma_v;
        let q = (zero - g * x) / (d * d);
        let local = a_v.ge(per_sample).select(zero, v_v * q);
        let instance = ((x - k_i_v) - r_i_v) * slope_i_v;
        store(
            &mut dx[i..],
            g / d + local + instance + (x - mean_b_v) * slope_b_v,
        );
        i += lanes;
    }
    for i in whole..n {
        let x = x[i];
        let (d, batch) = b0_divisor(x, [a, v, b]);
        let g = dy[i] * gamma;
        let q = (T::default() - g * x) / (d * d);
        let local = if batch { T::default() } else { v * q };
        let instance = ((x - k_i) - r_i) * slope_i;
        dx[i].write(g / d + local + instance + (x - mean_b) * slope_b);
    }
}

#[cfg(test)]
pub(super) mod tests;

/// `out = max(x scale + shift, floor)`: FRN's output through its thresholded linear unit, on a
/// segment of one (sample, channel); `coefficients` is `[scale, shift, floor]`.
#[with_simd]
pub(crate) fn affine_floor<S: Simd, T: Lanes>(
    out: &mut [MaybeUninit<T>],
    x: &[T],
    coefficients: [T; 3],
) {
    let [scale, shift, floor] = coefficients;
    assert_eq!(out.len(), x.len());
    let lanes = T::lanes::<S>();
    let whole = x.len() / lanes * lanes;
    let [scale_v, shift_v, floor_v] = coefficients.map(|c| c.splat::<S>());
    let (out_head, out_tail) = out.split_at_mut(whole);
    for (o, chunk) in out_head.chunks_exact_mut(lanes).zip(x.chunks_exact(lanes)) {
        let z = load::<S, T>(chunk) * scale_v + shift_v;
        store(o, z.gt(floor_v).select(z, floor_v));
    }
    for (o, &v) in out_tail.iter_mut().zip(&x[whole..]) {
        let z = v * scale + shift;
        o.write(if z > floor { z } else { floor });
    }
}

/// With `g = dy` where `x scale + shift > floor` and 0 elsewhere (the gradient that passes the
/// thresholded linear unit): `[Σ g, Σ g x, Σ dy]` over a segment; `coefficients` is
/// `[scale, shift, floor]`.
#[with_simd]
pub(crate) fn floor_grad_sums<S: Simd, T: Lanes>(
    dy: &[T],
    x: &[T],
    coefficients: [T; 3],
) -> [f64; 3] {
    assert_eq!(dy.len(), x.len());
    let [scale, shift, floor] = coefficients;
    let [scale_v, shift_v, floor_v] = coefficients.map(|c| c.splat::<S>());
    let zero = T::default().splat::<S>();
    let terms = |i: usize| {
        let (x, dy) = (load::<S, T>(&x[i..]), load::<S, T>(&dy[i..]));
        let g = (x * scale_v + shift_v).gt(floor_v).select(dy, zero);
        [g, g * x, dy]
    };
    let tail = |i: usize| {
        let passes = x[i] * scale + shift > floor;
        let g = if passes { dy[i] } else { T::default() };
        [g.to_f64(), (g * x[i]).to_f64(), dy[i].to_f64()]
    };
    fixed_order_sums(x.len(), terms, tail)
}

/// `dx = g per_g + x slope`, `g` as in [`floor_grad_sums`]: the input gradient of a segment of
/// FRN with its thresholded linear unit; `coefficients` is `[scale, shift, floor, per_g,
/// slope]`.
#[with_simd]
pub(crate) fn floor_gradient<S: Simd, T: Lanes>(
    dx: &mut [MaybeUninit<T>],
    x: &[T],
    dy: &[T],
    coefficients: [T; 5],
) {
    let [scale, shift, floor, per_g, slope] = coefficients;
    assert!(dx.len() == x.len() && dy.len() == x.len());
    let lanes = T::lanes::<S>();
    let whole = x.len() / lanes * lanes;
    let [scale_v, shift_v, floor_v, per_g_v, slope_v] = coefficients.map(|c| c.splat::<S>());
    let zero = T::default().splat::<S>();
    let (dx_head, dx_tail) = dx.split_at_mut(whole);
    let inputs = x.chunks_exact(lanes).zip(dy.chunks_exact(lanes));
    for (d, (chunk_x, chunk_dy)) in dx_head.chunks_exact_mut(lanes).zip(inputs) {
        let (x, dy) = (load::<S, T>(chunk_x), load::<S, T>(chunk_dy));
        let g = (x * scale_v + shift_v).gt(floor_v).select(dy, zero);
        store(d, g * per_g_v + x * slope_v);
    }
    for (d, (&x, &dy)) in dx_tail.iter_mut().zip(x[whole..].iter().zip(&dy[whole..])) {
        let g = if x * scale + shift > floor {
            dy
        } else {
            T::default()
        };
        d.write(g * per_g + x * slope);
    }
}
