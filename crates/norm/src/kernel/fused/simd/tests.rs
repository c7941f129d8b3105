//! The vector loops at their edges, on every instruction set this CPU has: lengths of no
//! value, one value, and one off every vector width and block, against a plain `f64`
//! computation, and with the same bits from every instruction set (sums included: their order
//! does not depend on the width).

use std::mem::MaybeUninit;

use macerator::{Arch, Simd, WithSimd};
use normlab_testkit::instruction_sets;

use super::*;

/// Lengths at and around every lane count (4, 8, 16 `f32`), [`PARTIALS`] and [`BLOCK`].
const LENGTHS: [usize; 20] = [
    0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 511, 513, 1025, 1537,
];

/// Runs `body` (which names the vector type `S`) on every instruction set of
/// [`instruction_sets`], with `name = value` bound inside it, and returns what each gave.
macro_rules! on_every_arch {
    (-> $out:ty; $($name:ident: $ty:ty = $value:expr),*; $body:expr) => {{
        struct Op<'a> {
            $($name: $ty,)*
            _values: std::marker::PhantomData<&'a ()>,
        }
        impl WithSimd for Op<'_> {
            type Output = $out;
            #[inline(always)]
            fn with_simd<S: Simd>(self) -> $out {
                let Op { $($name,)* .. } = self;
                $body
            }
        }
        normlab_testkit::instruction_sets()
            .into_iter()
            .map(|arch| {
                let op = Op { $($name: $value,)* _values: std::marker::PhantomData };
                // SAFETY: `instruction_sets` lists only instruction sets this CPU has.
                (arch, unsafe { arch.dispatch(op) })
            })
            .collect::<Vec<(Arch, $out)>>()
    }};
}
pub(in crate::kernel::fused) use on_every_arch;

/// Deterministic values in about `[-2, 2]` with an offset, so that shifting matters.
fn values(len: usize, seed: u64) -> Vec<f32> {
    (0..len as u64)
        .map(|i| {
            let k = (i + 1).wrapping_mul(2654435761).wrapping_add(seed * 97) % 1000;
            k as f32 / 250.0 - 2.0 + 3.0
        })
        .collect()
}

/// Every result equal, bit for bit, to the first (the scalar fallback's).
pub(in crate::kernel::fused) fn same_bits<T: PartialEq + std::fmt::Debug>(
    what: &str,
    results: &[(Arch, T)],
) {
    let (first_arch, first) = &results[0];
    for (arch, result) in &results[1..] {
        assert!(
            result == first,
            "{what}: {arch:?} gives {result:?}, {first_arch:?} {first:?}"
        );
    }
}

fn close(got: f64, want: f64, scale: f64, what: &str) {
    let error = (got - want).abs() / scale.max(1.0);
    assert!(error < 1e-6, "{what}: {got} against {want}");
}

/// The values of an output buffer the function under test filled.
fn filled(out: Vec<MaybeUninit<f32>>) -> Vec<u32> {
    // SAFETY: the functions under test write every value of the buffer they are given (what
    // these tests check, with buffers from `uninit_like`, whose values start as NaN).
    out.into_iter()
        .map(|v| unsafe { v.assume_init() }.to_bits())
        .collect()
}

/// An output buffer whose values start as NaN, so that a value left unwritten shows.
fn uninit_like(len: usize) -> Vec<MaybeUninit<f32>> {
    vec![MaybeUninit::new(f32::NAN); len]
}

#[test]
fn sums_give_the_same_bits_on_every_instruction_set() {
    assert!(!instruction_sets().is_empty());
    for len in LENGTHS {
        let (x, dy) = (values(len, 1), values(len, 2));
        let k = x.first().copied().unwrap_or(0.0);
        let sums = on_every_arch!(-> [f64; 2]; x: &'a [f32] = &x, k: f32 = k; {
            shifted_sums_impl::<S, f32>(x, k)
        });
        same_bits(&format!("shifted_sums of {len}"), &sums);
        let want: f64 = x.iter().map(|&v| (v - k) as f64).sum();
        let want_sq: f64 = x.iter().map(|&v| ((v - k) as f64).powi(2)).sum();
        close(sums[0].1[0], want, len as f64, "Σ (x - k)");
        close(sums[0].1[1], want_sq, len as f64, "Σ (x - k)^2");

        let grads = on_every_arch!(-> [f64; 3]; dy: &'a [f32] = &dy, x: &'a [f32] = &x, k: f32 = k; {
            shifted_grad_sums_impl::<S, f32>(dy, x, k)
        });
        same_bits(&format!("shifted_grad_sums of {len}"), &grads);
        let want_g: f64 = dy.iter().map(|&g| g as f64).sum();
        let want_gd: f64 = dy
            .iter()
            .zip(&x)
            .map(|(&g, &v)| g as f64 * (v - k) as f64)
            .sum();
        close(grads[0].1[0], want_g, len as f64, "Σ dy");
        close(grads[0].1[1], want_gd, len as f64, "Σ dy (x - k)");
        close(grads[0].1[2], want, len as f64, "Σ (x - k)");
    }
}

#[test]
fn sums_in_f64_give_the_same_bits_on_every_instruction_set() {
    for len in LENGTHS {
        let x: Vec<f64> = values(len, 3).into_iter().map(f64::from).collect();
        let sums = on_every_arch!(-> [f64; 2]; x: &'a [f64] = &x; {
            shifted_sums_impl::<S, f64>(x, 1.0)
        });
        same_bits(&format!("f64 shifted_sums of {len}"), &sums);
        let want: f64 = x.iter().map(|v| v - 1.0).sum();
        close(sums[0].1[0], want, len as f64, "Σ (x - 1)");
    }
}

#[test]
fn segment_maps_write_every_value_the_same_on_every_instruction_set() {
    for len in LENGTHS {
        let (x, dy) = (values(len, 4), values(len, 5));
        let coefficients = [3.0f32, 0.25, 1.5, -0.5];
        let outs = on_every_arch!(-> Vec<u32>; x: &'a [f32] = &x, c: [f32; 4] = coefficients; {
            let mut out = uninit_like(x.len());
            affine_impl::<S, f32>(&mut out, x, c);
            filled(out)
        });
        same_bits(&format!("affine of {len}"), &outs);
        let [k, r, scale, shift] = coefficients;
        let want: Vec<u32> = x
            .iter()
            .map(|&v| (((v - k) - r) * scale + shift).to_bits())
            .collect();
        assert_eq!(outs[0].1, want, "affine of {len}");

        let gradient = [3.0f32, 0.25, 0.75, -0.125, 0.5];
        let outs = on_every_arch!(-> Vec<u32>; x: &'a [f32] = &x, dy: &'a [f32] = &dy, c: [f32; 5] = gradient; {
            let mut dx = uninit_like(x.len());
            gradient_impl::<S, f32>(&mut dx, x, dy, c);
            filled(dx)
        });
        same_bits(&format!("gradient of {len}"), &outs);
        let [k, r, per_dy, slope, offset] = gradient;
        let want: Vec<u32> = x
            .iter()
            .zip(&dy)
            .map(|(&v, &g)| (g * per_dy + ((v - k) - r) * slope + offset).to_bits())
            .collect();
        assert_eq!(outs[0].1, want, "gradient of {len}");
    }
}

#[test]
fn row_maps_write_every_value_the_same_on_every_instruction_set() {
    for len in LENGTHS {
        let [x, dy, centre, scale, shift] = [6, 7, 8, 9, 10].map(|seed| values(len, seed));
        let outs = on_every_arch!(-> Vec<u32>; x: &'a [f32] = &x, centre: &'a [f32] = &centre, scale: &'a [f32] = &scale, shift: &'a [f32] = &shift; {
            let mut out = uninit_like(x.len());
            affine_each_impl::<S, f32>(&mut out, x, centre, scale, shift);
            filled(out)
        });
        same_bits(&format!("affine_each of {len}"), &outs);
        let want: Vec<u32> = (0..len)
            .map(|i| ((x[i] - centre[i]) * scale[i] + shift[i]).to_bits())
            .collect();
        assert_eq!(outs[0].1, want, "affine_each of {len}");

        let outs = on_every_arch!(-> Vec<u32>; x: &'a [f32] = &x, dy: &'a [f32] = &dy, c: [&'a [f32]; 4] = [&centre, &scale, &shift, &x]; {
            let mut dx = uninit_like(x.len());
            gradient_each_impl::<S, f32>(&mut dx, x, dy, c);
            filled(dx)
        });
        same_bits(&format!("gradient_each of {len}"), &outs);
        let want: Vec<u32> = (0..len)
            .map(|i| (dy[i] * scale[i] + (x[i] - centre[i]) * shift[i] + x[i]).to_bits())
            .collect();
        assert_eq!(outs[0].1, want, "gradient_each of {len}");

        let outs = on_every_arch!(-> Vec<u32>; x: &'a [f32] = &x, gamma: &'a [f32] = &scale, beta: &'a [f32] = &shift; {
            let mut out = uninit_like(x.len());
            normalize_each_impl::<S, f32>(&mut out, x, [3.0, 0.25, 0.5], gamma, beta);
            filled(out)
        });
        same_bits(&format!("normalize_each of {len}"), &outs);
        let want: Vec<u32> = (0..len)
            .map(|i| (((x[i] - 3.0) - 0.25) * (0.5 * scale[i]) + shift[i]).to_bits())
            .collect();
        assert_eq!(outs[0].1, want, "normalize_each of {len}");
    }
}

#[test]
fn row_accumulators_add_every_value_the_same_on_every_instruction_set() {
    for len in LENGTHS {
        let [x, dy, k, start] = [11, 12, 13, 14].map(|seed| values(len, seed));
        let outs = on_every_arch!(-> Vec<Vec<f32>>; x: &'a [f32] = &x, k: &'a [f32] = &k, start: &'a [f32] = &start; {
            let (mut sum, mut sum_sq) = (start.to_vec(), start.to_vec());
            add_shifted_sums_impl::<S, f32>([&mut sum, &mut sum_sq], x, k);
            vec![sum, sum_sq]
        });
        same_bits(&format!("add_shifted_sums of {len}"), &outs);
        let d: Vec<f32> = (0..len).map(|i| x[i] - k[i]).collect();
        let want_sum: Vec<f32> = (0..len).map(|i| start[i] + d[i]).collect();
        let want_sq: Vec<f32> = (0..len).map(|i| start[i] + d[i] * d[i]).collect();
        assert_eq!(
            outs[0].1,
            vec![want_sum.clone(), want_sq],
            "add_shifted_sums of {len}"
        );

        let outs = on_every_arch!(-> Vec<Vec<f32>>; dy: &'a [f32] = &dy, x: &'a [f32] = &x, k: &'a [f32] = &k, start: &'a [f32] = &start; {
            let mut sums = [start.to_vec(), start.to_vec(), start.to_vec()];
            let [a, b, c] = &mut sums;
            add_shifted_grad_sums_impl::<S, f32>([a, b, c], dy, x, k);
            sums.to_vec()
        });
        same_bits(&format!("add_shifted_grad_sums of {len}"), &outs);
        let want: Vec<Vec<f32>> = vec![
            (0..len).map(|i| start[i] + dy[i]).collect(),
            (0..len).map(|i| start[i] + dy[i] * d[i]).collect(),
            want_sum,
        ];
        assert_eq!(outs[0].1, want, "add_shifted_grad_sums of {len}");

        let outs = on_every_arch!(-> Vec<Vec<f32>>; dy: &'a [f32] = &dy, x: &'a [f32] = &x, start: &'a [f32] = &start; {
            let (mut sum_dy, mut sum_dy_x_hat) = (start.to_vec(), start.to_vec());
            add_param_grads_impl::<S, f32>([&mut sum_dy, &mut sum_dy_x_hat], dy, x, [3.0, 0.25, 0.5]);
            vec![sum_dy, sum_dy_x_hat]
        });
        same_bits(&format!("add_param_grads of {len}"), &outs);
        let want: Vec<Vec<f32>> = vec![
            (0..len).map(|i| start[i] + dy[i]).collect(),
            (0..len)
                .map(|i| start[i] + dy[i] * (((x[i] - 3.0) - 0.25) * 0.5))
                .collect(),
        ];
        assert_eq!(outs[0].1, want, "add_param_grads of {len}");
    }
}

/// The lane counts the sums rely on: [`PARTIALS`] is a multiple of each.
#[test]
fn every_lane_count_divides_the_partial_sums() {
    struct Lanes;
    impl WithSimd for Lanes {
        type Output = [usize; 2];
        fn with_simd<S: Simd>(self) -> [usize; 2] {
            [f32::lanes::<S>(), f64::lanes::<S>()]
        }
    }
    for arch in instruction_sets() {
        // SAFETY: `instruction_sets` lists only instruction sets this CPU has.
        let lanes = unsafe { arch.dispatch(Lanes) };
        assert!(
            lanes.iter().all(|&l| PARTIALS.is_multiple_of(l)),
            "{arch:?}: {lanes:?}"
        );
    }
}

#[test]
fn the_sigmoid_is_within_a_few_units_in_the_last_place_and_the_same_on_every_instruction_set() {
    // Every exponent `exp_f32` meets, the clamps' ends and beyond, and values near the ties of
    // its rounding to the nearest multiple of ln 2.
    let mut z: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.025).collect();
    z.extend([
        -1e4,
        -88.5,
        -87.0,
        -0.5 * std::f32::consts::LN_2,
        0.0,
        1e-8,
        87.9,
        88.5,
        1e4,
    ]);
    let gates = on_every_arch!(-> Vec<u32>; z: &'a [f32] = &z; {
        let mut gate = vec![f32::NAN; z.len()];
        gates_impl::<S, f32>(&mut gate, z, 1.0);
        gate.into_iter().map(f32::to_bits).collect()
    });
    same_bits("sigmoid", &gates);
    for (&z, &bits) in z.iter().zip(&gates[0].1) {
        let got = f32::from_bits(bits);
        assert_eq!(got, z.sigmoid(), "the vector and scalar sigmoid of {z}");
        let want = 1.0 / (1.0 + (-(z as f64)).exp());
        // Where the sigmoid underflows f32's normal range the error is absolute.
        let error = (got as f64 - want).abs() / want.max(1e-30);
        assert!(
            error < 1e-6 || (got as f64 - want).abs() < 1e-37,
            "sigmoid({z}) = {got}, not {want}"
        );
    }
}

#[test]
fn gated_segments_write_every_value_the_same_on_every_instruction_set() {
    for len in LENGTHS {
        let (x, dy) = (values(len, 6), values(len, 7));
        let affine = [-0.75f32, 1.25, 0.5];
        let outs = on_every_arch!(-> Vec<u32>; x: &'a [f32] = &x, c: [f32; 3] = affine; {
            let mut out = uninit_like(x.len());
            gated_affine_impl::<S, f32>(&mut out, x, c);
            filled(out)
        });
        same_bits(&format!("gated_affine of {len}"), &outs);
        let [v, scale, shift] = affine;
        let want: Vec<u32> = x
            .iter()
            .map(|&x| (x * (v * x).sigmoid() * scale + shift).to_bits())
            .collect();
        assert_eq!(outs[0].1, want, "gated_affine of {len}");

        let mut gate = vec![0.0f32; len];
        gates(&mut gate, &x, v);
        let k = x.first().copied().unwrap_or(0.0);
        let sums = on_every_arch!(-> [f64; 4]; dy: &'a [f32] = &dy, x: &'a [f32] = &x, gate: &'a [f32] = &gate, k: f32 = k; {
            gated_grad_sums_impl::<S, f32>(dy, x, gate, k)
        });
        same_bits(&format!("gated_grad_sums of {len}"), &sums);
        let terms = x.iter().zip(&dy).zip(&gate);
        let want_h: f64 = terms
            .clone()
            .map(|((&x, &g), &s)| g as f64 * x as f64 * s as f64)
            .sum();
        close(sums[0].1[0], want_h, len as f64, "Σ dy x gate");
        let want_slope: f64 = terms
            .clone()
            .map(|((&x, &g), &s)| g as f64 * (x as f64).powi(2) * s as f64 * (1.0 - s as f64))
            .sum();
        close(
            sums[0].1[3],
            want_slope,
            len as f64,
            "Σ dy x^2 gate (1 - gate)",
        );

        let gradient = [-0.75f32, 0.5, k, 0.125, 0.25];
        let outs = on_every_arch!(-> Vec<u32>; x: &'a [f32] = &x, dy: &'a [f32] = &dy, gate: &'a [f32] = &gate, c: [f32; 5] = gradient; {
            let mut dx = uninit_like(x.len());
            gated_gradient_impl::<S, f32>(&mut dx, x, dy, gate, c);
            filled(dx)
        });
        same_bits(&format!("gated_gradient of {len}"), &outs);
        let [v, per_dy, k, r, slope] = gradient;
        let want: Vec<u32> = terms
            .map(|((&x, &g), &s)| {
                let local = s + v * x * s * (1.0 - s);
                (g * per_dy * local - ((x - k) - r) * slope).to_bits()
            })
            .collect();
        assert_eq!(outs[0].1, want, "gated_gradient of {len}");
    }
}

#[test]
fn evonorm_b0_segments_write_every_value_the_same_on_every_instruction_set() {
    for len in LENGTHS {
        let (x, dy) = (values(len, 8), values(len, 9));
        // `a` in the middle of `v x + b`'s range: both branches of the max.
        let affine = [3.0f32, 0.5, 1.25, 0.75, -0.25];
        let outs = on_every_arch!(-> Vec<u32>; x: &'a [f32] = &x, c: [f32; 5] = affine; {
            let mut out = uninit_like(x.len());
            b0_affine_impl::<S, f32>(&mut out, x, c);
            filled(out)
        });
        same_bits(&format!("b0_affine of {len}"), &outs);
        let [a, v, b, gamma, beta] = affine;
        let divisor = |x: f32| if a >= v * x + b { a } else { v * x + b };
        let want: Vec<u32> = x
            .iter()
            .map(|&x| (x / divisor(x) * gamma + beta).to_bits())
            .collect();
        assert_eq!(outs[0].1, want, "b0_affine of {len}");

        let sums = on_every_arch!(-> [f64; 5]; dy: &'a [f32] = &dy, x: &'a [f32] = &x, c: [f32; 4] = [a, v, b, gamma]; {
            b0_grad_sums_impl::<S, f32>(dy, x, c)
        });
        same_bits(&format!("b0_grad_sums of {len}"), &sums);
        let mut want = [0.0f64; 5];
        for (&x, &g) in x.iter().zip(&dy) {
            let d = divisor(x) as f64;
            let q = -(g as f64) * gamma as f64 * x as f64 / (d * d);
            match a >= v * x + b {
                true => want[0] += q,
                false => {
                    want[1] += q;
                    want[2] += q * x as f64;
                }
            }
            want[3] += g as f64 * x as f64 / d;
            want[4] += g as f64;
        }
        for (k, (&got, want)) in sums[0].1.iter().zip(want).enumerate() {
            close(got, want, len as f64, &format!("b0_grad_sums {k} of {len}"));
        }

        let gradient = [a, v, b, gamma, 3.5, 0.125, 3.25, 0.5, -0.25];
        let outs = on_every_arch!(-> Vec<u32>; x: &'a [f32] = &x, dy: &'a [f32] = &dy, c: [f32; 9] = gradient; {
            let mut dx = uninit_like(x.len());
            b0_gradient_impl::<S, f32>(&mut dx, x, dy, c);
            filled(dx)
        });
        same_bits(&format!("b0_gradient of {len}"), &outs);
        let [.., k_i, r_i, slope_i, mean_b, slope_b] = gradient;
        let want: Vec<u32> = x
            .iter()
            .zip(&dy)
            .map(|(&x, &dy)| {
                let (d, g) = (divisor(x), dy * gamma);
                let q = (0.0 - g * x) / (d * d);
                let local = if a >= v * x + b { 0.0 } else { v * q };
                let instance = ((x - k_i) - r_i) * slope_i;
                (g / d + local + instance + (x - mean_b) * slope_b).to_bits()
            })
            .collect();
        assert_eq!(outs[0].1, want, "b0_gradient of {len}");
    }
}

#[test]
fn frn_unit_segments_write_every_value_the_same_on_every_instruction_set() {
    for len in LENGTHS {
        let (x, dy) = (values(len, 10), values(len, 11));
        // `x scale + shift` spans about [-1, 1]: the floor holds a quarter of the values.
        let unit = [0.5f32, -1.5, 0.5];
        let outs = on_every_arch!(-> Vec<u32>; x: &'a [f32] = &x, c: [f32; 3] = unit; {
            let mut out = uninit_like(x.len());
            affine_floor_impl::<S, f32>(&mut out, x, c);
            filled(out)
        });
        same_bits(&format!("affine_floor of {len}"), &outs);
        let [scale, shift, floor] = unit;
        let passes = |x: f32| x * scale + shift > floor;
        let want: Vec<u32> = x
            .iter()
            .map(|&x| if passes(x) { x * scale + shift } else { floor }.to_bits())
            .collect();
        assert_eq!(outs[0].1, want, "affine_floor of {len}");

        let sums = on_every_arch!(-> [f64; 3]; dy: &'a [f32] = &dy, x: &'a [f32] = &x, c: [f32; 3] = unit; {
            floor_grad_sums_impl::<S, f32>(dy, x, c)
        });
        same_bits(&format!("floor_grad_sums of {len}"), &sums);
        let mut want = [0.0f64; 3];
        for (&x, &dy) in x.iter().zip(&dy) {
            let g = if passes(x) { dy as f64 } else { 0.0 };
            want[0] += g;
            want[1] += g * x as f64;
            want[2] += dy as f64;
        }
        for (k, (&got, want)) in sums[0].1.iter().zip(want).enumerate() {
            close(
                got,
                want,
                len as f64,
                &format!("floor_grad_sums {k} of {len}"),
            );
        }

        let gradient = [scale, shift, floor, 1.25, -0.375];
        let outs = on_every_arch!(-> Vec<u32>; x: &'a [f32] = &x, dy: &'a [f32] = &dy, c: [f32; 5] = gradient; {
            let mut dx = uninit_like(x.len());
            floor_gradient_impl::<S, f32>(&mut dx, x, dy, c);
            filled(dx)
        });
        same_bits(&format!("floor_gradient of {len}"), &outs);
        let [.., per_g, slope] = gradient;
        let want: Vec<u32> = x
            .iter()
            .zip(&dy)
            .map(|(&x, &dy)| {
                let g = if passes(x) { dy } else { 0.0 };
                (g * per_g + x * slope).to_bits()
            })
            .collect();
        assert_eq!(outs[0].1, want, "floor_gradient of {len}");
    }
}
