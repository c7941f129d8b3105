//! The CPU kernels at their edges, against a plain `f64` computation of the same formulas: no
//! values (no samples, no positions), one value, one channel, one group, a group per channel,
//! segments one off every vector width, dense rows (one position per channel), and tensors
//! large enough to be split into parallel tasks. Valgrind's memcheck runs these in CI: a value
//! the kernels hand out without writing it would be reported there.

use super::*;

/// Deterministic values with a per-position offset, so that centring matters.
fn values(len: usize, seed: u64) -> Vec<f32> {
    (0..len as u64)
        .map(|i| {
            let k = (i + 1).wrapping_mul(2654435761).wrapping_add(seed * 97) % 1000;
            k as f32 / 250.0 - 2.0 + (i % 7) as f32
        })
        .collect()
}

/// `[N, C, S]` shapes: the edges, then a few above the parallel threshold.
fn shapes() -> Vec<Dims> {
    let mut shapes = Vec::new();
    for n in [0, 1, 2, 3] {
        for c in [1, 2, 3, 4, 6] {
            for s in [0, 1, 3, 7, 15, 17, 31, 33, 63, 65] {
                shapes.push(Dims { n, c, s });
            }
        }
    }
    shapes.extend([
        Dims {
            n: 3,
            c: 5,
            s: 4099,
        },
        Dims {
            n: 1030,
            c: 33,
            s: 1,
        },
        Dims {
            n: 17,
            c: 8,
            s: 257,
        },
    ]);
    shapes
}

fn divisors(c: usize) -> Vec<usize> {
    (1..=c).filter(|&g| c.is_multiple_of(g)).collect()
}

const EPSILON: f64 = 1e-5;

/// `want` and `got` agree to f32 rounding, relative to the largest value of `want`.
fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_close_at(what, got, want, 1.0);
}

/// `want` and `got` agree to f32 rounding, relative to the largest value of `want` or
/// `scale`, the size of the terms `want` is a difference of, whichever is larger.
fn assert_close_at(what: &str, got: &[f32], want: &[f64], scale: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(scale, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            ((g as f64) - w).abs() <= 2e-5 * scale,
            "{what}: value {i} is {g}, expected {w}"
        );
    }
}

/// Group norm in `f64`: output, mean and variance per row, and the three gradients.
struct Reference {
    y: Vec<f64>,
    mean: Vec<f64>,
    var: Vec<f64>,
    dx: Vec<f64>,
    /// The largest term of `dx` before the terms cancel: `rstd * |dy * gamma|`.
    dx_scale: f64,
    dgamma: Vec<f64>,
    dbeta: Vec<f64>,
}

impl Reference {
    /// A kernel's `(y, mean, var)` and `(dx, dgamma, dbeta)` agree with these to f32 rounding.
    fn assert_matches(
        &self,
        what: &str,
        [y, mean, var]: [&[f32]; 3],
        [dx, dgamma, dbeta]: [&[f32]; 3],
    ) {
        assert_close(&format!("{what}: y"), y, &self.y);
        assert_close(&format!("{what}: mean"), mean, &self.mean);
        assert_close(&format!("{what}: var"), var, &self.var);
        assert_close_at(&format!("{what}: dx"), dx, &self.dx, self.dx_scale);
        assert_close(&format!("{what}: dgamma"), dgamma, &self.dgamma);
        assert_close(&format!("{what}: dbeta"), dbeta, &self.dbeta);
    }
}

/// Normalizes `x: [N, C, S]` over each set of indices `sets` gives (with the channel of each
/// index), in `f64`, with the gradients of `Σ y * dy`.
fn reference(
    x: &[f32],
    dy: &[f32],
    [gamma, beta]: [&[f32]; 2],
    dims: Dims,
    sets: &[Vec<usize>],
    center: bool,
) -> Reference {
    let channel = |i: usize| i / dims.s % dims.c;
    let mut r = Reference {
        y: vec![0.0; x.len()],
        mean: vec![],
        var: vec![],
        dx: vec![0.0; x.len()],
        dx_scale: 1.0,
        dgamma: vec![0.0; dims.c],
        dbeta: vec![0.0; dims.c],
    };
    for set in sets {
        let n = set.len() as f64;
        let mean = match center {
            true => set.iter().map(|&i| x[i] as f64).sum::<f64>() / n,
            false => 0.0,
        };
        let var = set
            .iter()
            .map(|&i| (x[i] as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let rstd = 1.0 / (var + EPSILON).sqrt();
        let x_hat = |i: usize| (x[i] as f64 - mean) * rstd;
        let g = |i: usize| dy[i] as f64 * gamma[channel(i)] as f64;
        let mean_g = match center {
            true => set.iter().map(|&i| g(i)).sum::<f64>() / n,
            false => 0.0,
        };
        let mean_g_x_hat = set.iter().map(|&i| g(i) * x_hat(i)).sum::<f64>() / n;
        for &i in set {
            r.y[i] = x_hat(i) * gamma[channel(i)] as f64 + beta[channel(i)] as f64;
            r.dx[i] = rstd * (g(i) - mean_g - x_hat(i) * mean_g_x_hat);
            r.dx_scale = r.dx_scale.max(rstd * g(i).abs());
            r.dgamma[channel(i)] += dy[i] as f64 * x_hat(i);
            r.dbeta[channel(i)] += dy[i] as f64;
        }
        r.mean.push(mean);
        r.var.push(var);
    }
    r
}

/// The indices of each (sample, group) row.
fn group_rows(dims: Dims, groups: usize) -> Vec<Vec<usize>> {
    let row = dims.c / groups * dims.s;
    (0..dims.n * groups)
        .map(|r| (r * row..(r + 1) * row).collect())
        .collect()
}

/// The indices of each channel over the positions and the samples of each consecutive virtual
/// batch of `chunks` samples, batch after batch.
fn channel_sets(dims: Dims, chunks: &[usize]) -> Vec<Vec<usize>> {
    let starts = chunks.iter().scan(0, |start, &size| {
        *start += size;
        Some(*start - size..*start)
    });
    starts
        .flat_map(|samples| {
            (0..dims.c).map(move |c| {
                samples
                    .clone()
                    .flat_map(|n| {
                        let start = (n * dims.c + c) * dims.s;
                        start..start + dims.s
                    })
                    .collect()
            })
        })
        .collect()
}

fn inputs(dims: Dims) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    (
        values(dims.len(), 1),
        values(dims.len(), 2),
        values(dims.c, 3),
        values(dims.c, 4),
    )
}

#[test]
fn group_norm_matches_f64_at_every_edge() {
    for dims in shapes() {
        let (x, dy, gamma, beta) = inputs(dims);
        for groups in divisors(dims.c) {
            for center in [true, false] {
                let what = format!("{dims:?}, {groups} groups, centred {center}");
                let spec = GroupSpec {
                    groups,
                    center,
                    epsilon: EPSILON,
                };
                let (y, mean, var) = group_norm(&x, &gamma, &beta, dims, spec);
                let (dx, dgamma, dbeta) = group_norm_backward(&x, &dy, &gamma, &var, dims, spec);
                if dims.len() == 0 {
                    assert!(y.is_empty() && dx.is_empty(), "{what}");
                    assert_eq!([mean.len(), var.len()], [dims.n * groups; 2], "{what}");
                    assert!(mean.iter().chain(&var).all(|&v| v == 0.0), "{what}");
                    assert_eq!([dgamma, dbeta], [vec![0.0; dims.c], vec![0.0; dims.c]]);
                    continue;
                }
                let want = reference(
                    &x,
                    &dy,
                    [&gamma, &beta],
                    dims,
                    &group_rows(dims, groups),
                    center,
                );
                want.assert_matches(&what, [&y, &mean, &var], [&dx, &dgamma, &dbeta]);
            }
        }
    }
}

#[test]
fn batch_norm_matches_f64_at_every_edge() {
    for dims in shapes() {
        // The whole batch, then virtual batches of 2 (ghost batch norm; an odd batch's last
        // one holds the rest).
        let halves = vec![2; dims.n / 2]
            .into_iter()
            .chain((dims.n % 2 == 1).then_some(1));
        for chunks in [vec![dims.n], halves.filter(|&n| n > 0).collect()] {
            if chunks.is_empty() {
                continue;
            }
            let (x, dy, gamma, beta) = inputs(dims);
            let what = format!("{dims:?} in batches of {chunks:?}");
            let (y, mean, var) = batch_norm(&x, &gamma, &beta, dims, &chunks, EPSILON);
            let (dx, dgamma, dbeta) =
                batch_norm_backward(&x, &dy, &gamma, &var, dims, &chunks, EPSILON);
            if dims.len() == 0 {
                assert!(y.is_empty() && dx.is_empty(), "{what}");
                for stats in [mean, var] {
                    assert_eq!(stats, vec![0.0; dims.c * chunks.len()], "{what}");
                }
                assert_eq!([dgamma, dbeta], [vec![0.0; dims.c], vec![0.0; dims.c]]);
                continue;
            }
            let sets = channel_sets(dims, &chunks);
            let want = reference(&x, &dy, [&gamma, &beta], dims, &sets, true);
            want.assert_matches(&what, [&y, &mean, &var], [&dx, &dgamma, &dbeta]);
        }
    }
}

/// Virtual batches run side by side on the threads: each gives the bits it gives alone, as a
/// plain batch norm of its own samples, and the parameter gradients add up as autodiff adds
/// the batches' (the last one first), whether the batches share a task or not.
#[test]
fn virtual_batches_give_the_bits_of_each_batch_alone() {
    for (dims, chunks) in [
        (
            Dims {
                n: 32,
                c: 16,
                s: 196,
            },
            vec![8; 4],
        ),
        (
            Dims {
                n: 32,
                c: 8,
                s: 784,
            },
            vec![2; 16],
        ),
        (
            Dims {
                n: 7,
                c: 3,
                s: 4099,
            },
            vec![3, 3, 1],
        ),
        (
            Dims {
                n: 1030,
                c: 33,
                s: 1,
            },
            vec![2; 515],
        ),
    ] {
        let (x, dy, gamma, beta) = inputs(dims);
        let (y, means, vars) = batch_norm(&x, &gamma, &beta, dims, &chunks, EPSILON);
        let (dx, dgamma, dbeta) =
            batch_norm_backward(&x, &dy, &gamma, &vars, dims, &chunks, EPSILON);
        let (mut y_alone, mut means_alone, mut vars_alone, mut dx_alone) =
            (vec![], vec![], vec![], vec![]);
        let mut grads_alone = vec![];
        let mut start = 0;
        for &n in &chunks {
            let (batch, at) = (Dims { n, ..dims }, start..start + n * dims.c * dims.s);
            start = at.end;
            let (x, dy) = (&x[at.clone()], &dy[at]);
            let (y, mean, var) = batch_norm(x, &gamma, &beta, batch, &[n], EPSILON);
            let (dx, dgamma, dbeta) =
                batch_norm_backward(x, dy, &gamma, &var, batch, &[n], EPSILON);
            y_alone.extend(y);
            means_alone.extend(mean);
            vars_alone.extend(var);
            dx_alone.extend(dx);
            grads_alone.push((dgamma, dbeta));
        }
        let what = format!("{dims:?} in batches of {}", chunks[0]);
        assert_eq!(
            (y, means, vars),
            (y_alone, means_alone, vars_alone),
            "{what}"
        );
        assert_eq!(dx, dx_alone, "{what}");
        let mut grads_alone = grads_alone.into_iter().rev();
        let (mut dgamma_alone, mut dbeta_alone) = grads_alone.next().unwrap();
        for (batch_dgamma, batch_dbeta) in grads_alone {
            add_to(&mut dgamma_alone, batch_dgamma);
            add_to(&mut dbeta_alone, batch_dbeta);
        }
        assert_eq!((dgamma, dbeta), (dgamma_alone, dbeta_alone), "{what}");
    }
}

/// The dense sums add each span of 64 rows of a block of 256 channels in `f32`, then the spans
/// into `f64` in row order, as one thread does, whatever the spans' tasks: the statistics of a
/// dense batch, and the experiments' numbers, do not depend on how rayon shares them out.
#[test]
fn dense_sums_add_in_row_order_to_the_bit() {
    for n in [0, 1, 63, 64, 65, 130, 1030] {
        for c in [1, 33, 256, 257, 600] {
            let dims = Dims { n, c, s: 1 };
            let x = values(dims.len(), 5);
            let got = dense_sums(dims, |row, _, [sum, sum_sq]: &mut [Vec<f32>; 2]| {
                for ((sum, sum_sq), &v) in sum.iter_mut().zip(sum_sq.iter_mut()).zip(&x[row]) {
                    *sum += v;
                    *sum_sq += v * v;
                }
            });
            let mut want = vec![[0.0f64; 2]; c];
            for first in (0..c).step_by(256) {
                let columns = first..(first + 256).min(c);
                for span in (0..n).collect::<Vec<_>>().chunks(64) {
                    for channel in columns.clone() {
                        let (mut sum, mut sum_sq) = (0.0f32, 0.0f32);
                        for &row in span {
                            let v = x[row * c + channel];
                            sum += v;
                            sum_sq += v * v;
                        }
                        want[channel][0] += f64::from(sum);
                        want[channel][1] += f64::from(sum_sq);
                    }
                }
            }
            assert_eq!(got, want, "{dims:?}");
        }
    }
}

/// Masks of `rows` rows: none padded, the first (the shift then comes from a later row), every
/// other one, the second half; those with a valid row (all of them for no rows).
fn row_masks(rows: usize) -> Vec<Vec<bool>> {
    let masks: [Vec<bool>; 4] = [
        vec![true; rows],
        (0..rows).map(|r| r > 0).collect(),
        (0..rows).map(|r| r % 2 == 1).collect(),
        (0..rows).map(|r| r < rows.div_ceil(2)).collect(),
    ];
    masks
        .into_iter()
        .filter(|m| rows == 0 || m.contains(&true))
        .collect()
}

#[test]
fn masked_batch_norm_matches_f64_at_every_edge() {
    for dims in shapes().into_iter().filter(|d| d.s == 1) {
        let c = dims.c;
        for valid in row_masks(dims.n) {
            let (mut x, dy, gamma, beta) = inputs(dims);
            // Padding away from the data: a statistic that counted it would be off.
            for (r, _) in valid.iter().enumerate().filter(|(_, v)| !**v) {
                x[r * c..(r + 1) * c].iter_mut().for_each(|v| *v += 5.0);
            }
            let what = format!("{dims:?}, valid rows {valid:?}");
            let (y, mean, var) = masked_batch_norm(&x, &valid, [&gamma, &beta], c, EPSILON);
            let (dx, dgamma, dbeta) =
                masked_batch_norm_backward(&x, &valid, &dy, [&gamma, &var], c, EPSILON);
            if dims.len() == 0 {
                assert!(y.is_empty() && dx.is_empty(), "{what}");
                for stats in [mean, var, dgamma, dbeta] {
                    assert_eq!(stats, vec![0.0; c], "{what}");
                }
                continue;
            }
            // Batch norm over the valid rows alone; a padded row's output and gradient are
            // zero, and its `dy` reaches nothing.
            let sets: Vec<Vec<usize>> = (0..c)
                .map(|channel| {
                    let rows = (0..dims.n).filter(|&r| valid[r]);
                    rows.map(|r| r * c + channel).collect()
                })
                .collect();
            let want = reference(&x, &dy, [&gamma, &beta], dims, &sets, true);
            want.assert_matches(&what, [&y, &mean, &var], [&dx, &dgamma, &dbeta]);
        }
    }
}

#[test]
fn batch_renorm_matches_f64_at_every_edge() {
    // Bounds that clip `r` and `d` in some channels and not in others.
    let bounds = [1.3, 0.4];
    for dims in shapes() {
        let (x, dy, gamma, beta) = inputs(dims);
        let mu: Vec<f32> = values(dims.c, 5).iter().map(|v| v * 0.3).collect();
        let sigma: Vec<f32> = values(dims.c, 6).iter().map(|v| v.abs() + 0.5).collect();
        let what = format!("{dims:?}");
        let (y, stats) = batch_renorm(&x, [&gamma, &beta], [&mu, &sigma], dims, bounds, EPSILON);
        let (dx, dgamma, dbeta) = batch_renorm_backward(&x, &dy, &gamma, &stats, dims, EPSILON);
        if dims.len() == 0 {
            assert!(y.is_empty() && dx.is_empty(), "{what}");
            assert_eq!(stats, vec![0.0; 4 * dims.c], "{what}");
            assert_eq!([dgamma, dbeta], [vec![0.0; dims.c], vec![0.0; dims.c]]);
            continue;
        }
        // Batch norm in f64 with `gamma r` for `gamma` and `gamma d + beta` for `beta`, `r` and
        // `d` constants; `gamma` reaches the output through both.
        let sets = channel_sets(dims, &[dims.n]);
        let plain = reference(&x, &dy, [&gamma, &beta], dims, &sets, true);
        let (mut r, mut d) = (vec![0.0; dims.c], vec![0.0; dims.c]);
        for c in 0..dims.c {
            let (moving_mu, moving_sigma) = (mu[c] as f64, sigma[c] as f64);
            let sigma_b = (plain.var[c] + EPSILON).sqrt();
            r[c] = (sigma_b / moving_sigma).clamp(1.0 / bounds[0], bounds[0]);
            d[c] = ((plain.mean[c] - moving_mu) / moving_sigma).clamp(-bounds[1], bounds[1]);
        }
        let gamma_r: Vec<f32> = (0..dims.c)
            .map(|c| (gamma[c] as f64 * r[c]) as f32)
            .collect();
        let shifted: Vec<f32> = (0..dims.c)
            .map(|c| (gamma[c] as f64 * d[c] + beta[c] as f64) as f32)
            .collect();
        let mut want = reference(&x, &dy, [&gamma_r, &shifted], dims, &sets, true);
        for c in 0..dims.c {
            // Σ dy x_hat, from the reference's gradient of `gamma r`.
            let sum_dy_x_hat = want.dgamma[c];
            want.dgamma[c] = r[c] * sum_dy_x_hat + d[c] * want.dbeta[c];
        }
        let sliced = |k: usize| stats[k * dims.c..(k + 1) * dims.c].to_vec();
        assert_close(&format!("{what}: r"), &sliced(2), &r);
        assert_close(&format!("{what}: d"), &sliced(3), &d);
        let [mean, var] = [sliced(0), sliced(1)];
        want.assert_matches(&what, [&y, &mean, &var], [&dx, &dgamma, &dbeta]);
    }
}

#[test]
fn channel_affine_matches_f64_at_every_edge() {
    for dims in shapes() {
        let (x, dy, centre, scale) = inputs(dims);
        let shift = values(dims.c, 5);
        let what = format!("{dims:?}");
        let channel = |i: usize| i / dims.s % dims.c;
        let y = channel_affine(&x, &centre, &scale, &shift, dims);
        let want: Vec<f64> = (0..x.len())
            .map(|i| {
                let c = channel(i);
                (x[i] as f64 - centre[c] as f64) * scale[c] as f64 + shift[c] as f64
            })
            .collect();
        assert_close(&format!("{what}: y"), &y, &want);

        let (dx, dscale, dshift) = channel_affine_backward(&x, &dy, &centre, &scale, dims);
        let want_dx: Vec<f64> = (0..x.len())
            .map(|i| dy[i] as f64 * scale[channel(i)] as f64)
            .collect();
        let (mut want_dscale, mut want_dshift) = (vec![0.0; dims.c], vec![0.0; dims.c]);
        for i in 0..x.len() {
            let c = channel(i);
            want_dscale[c] += dy[i] as f64 * (x[i] as f64 - centre[c] as f64);
            want_dshift[c] += dy[i] as f64;
        }
        assert_close(&format!("{what}: dx"), &dx, &want_dx);
        assert_close(&format!("{what}: dscale"), &dscale, &want_dscale);
        assert_close(&format!("{what}: dshift"), &dshift, &want_dshift);
    }
}

#[test]
fn kernels_refuse_inputs_that_do_not_fit_their_dims() {
    let dims = Dims { n: 2, c: 3, s: 4 };
    let (x, _, gamma, beta) = inputs(dims);
    let short = &x[..x.len() - 1];
    let groups = |groups| GroupSpec {
        groups,
        center: true,
        epsilon: EPSILON,
    };
    let refusals = [
        std::panic::catch_unwind(|| group_norm(short, &gamma, &beta, dims, groups(1))),
        std::panic::catch_unwind(|| group_norm(&x, &gamma[..2], &beta, dims, groups(1))),
        std::panic::catch_unwind(|| group_norm(&x, &gamma, &beta, dims, groups(2))),
        std::panic::catch_unwind(|| batch_norm(short, &gamma, &beta, dims, &[2], EPSILON)),
        std::panic::catch_unwind(|| batch_norm(&x, &gamma, &beta, dims, &[1], EPSILON)),
    ];
    for (i, refusal) in refusals.into_iter().enumerate() {
        assert!(refusal.is_err(), "case {i} was accepted");
    }
    let refused = std::panic::catch_unwind(|| channel_affine(short, &gamma, &beta, &beta, dims));
    assert!(refused.is_err(), "channel_affine accepted a short input");
}

#[test]
fn evonorm_s0_matches_f64_at_every_edge() {
    for dims in shapes() {
        let (x, dy, gamma, beta) = inputs(dims);
        let v: Vec<f32> = values(dims.c, 5).iter().map(|v| v / 4.0).collect();
        for groups in divisors(dims.c) {
            let what = format!("EvoNorm-S0, {dims:?}, {groups} groups");
            let spec = GroupSpec {
                groups,
                center: true,
                epsilon: EPSILON,
            };
            let (y, _, var) = evonorm_s0(&x, [&v, &gamma, &beta], dims, spec);
            let [dx, dv, dgamma, dbeta] =
                evonorm_s0_backward(&x, &dy, [&v, &gamma, &var], dims, spec);
            if dims.len() == 0 {
                assert!(y.is_empty() && dx.is_empty(), "{what}");
                assert_eq!(var, vec![0.0; dims.n * groups], "{what}");
                for grad in [dv, dgamma, dbeta] {
                    assert_eq!(grad, vec![0.0; dims.c], "{what}");
                }
                continue;
            }
            let channel = |i: usize| i / dims.s % dims.c;
            let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
            let mut want = [vec![0.0f64; x.len()], vec![0.0; x.len()]];
            let mut want_params = [vec![0.0f64; dims.c], vec![0.0; dims.c], vec![0.0; dims.c]];
            let (mut want_var, mut dx_scale) = (Vec::new(), 1.0f64);
            for row in group_rows(dims, groups) {
                let n = row.len() as f64;
                let mean = row.iter().map(|&i| x[i] as f64).sum::<f64>() / n;
                let row_var = row
                    .iter()
                    .map(|&i| (x[i] as f64 - mean).powi(2))
                    .sum::<f64>()
                    / n;
                let rstd = 1.0 / (row_var + EPSILON).sqrt();
                let at = |i: usize| {
                    let (x, c) = (x[i] as f64, channel(i));
                    let s = sigmoid(v[c] as f64 * x);
                    (x, c, s, x * s, dy[i] as f64 * gamma[c] as f64)
                };
                let sum_g_h: f64 = row.iter().map(|&i| at(i).4 * at(i).3).sum();
                for &i in &row {
                    let (x, c, s, h, g) = at(i);
                    let local = s + v[c] as f64 * x * s * (1.0 - s);
                    let from_var = sum_g_h * rstd.powi(3) * (x - mean) / n;
                    want[0][i] = h * rstd * gamma[c] as f64 + beta[c] as f64;
                    want[1][i] = g * rstd * local - from_var;
                    dx_scale = dx_scale.max((g * rstd * local).abs()).max(from_var.abs());
                    want_params[0][c] += g * rstd * x * x * s * (1.0 - s);
                    want_params[1][c] += dy[i] as f64 * h * rstd;
                    want_params[2][c] += dy[i] as f64;
                }
                want_var.push(row_var);
            }
            assert_close(&format!("{what}: y"), &y, &want[0]);
            assert_close(&format!("{what}: var"), &var, &want_var);
            assert_close_at(&format!("{what}: dx"), &dx, &want[1], dx_scale);
            let [want_dv, want_dgamma, want_dbeta] = &want_params;
            assert_close(&format!("{what}: dv"), &dv, want_dv);
            assert_close(&format!("{what}: dgamma"), &dgamma, want_dgamma);
            assert_close(&format!("{what}: dbeta"), &dbeta, want_dbeta);
        }
    }
}

#[test]
fn evonorm_b0_matches_f64_at_every_edge() {
    for dims in shapes() {
        check_evonorm_b0(dims, B0Variance::Batch);
    }
}

#[test]
fn evonorm_b0_inference_matches_f64_at_every_edge() {
    for dims in shapes() {
        check_evonorm_b0(dims, B0Variance::Running);
    }
}

/// EvoNorm-B0's forward and backward on `dims` against `f64`, dividing by the batch variance
/// (training) or by a running one (inference), as `variance` says.
fn check_evonorm_b0(dims: Dims, variance: B0Variance) {
    let (x, dy, gamma, beta) = inputs(dims);
    // Slopes on both sides of zero, so that both branches of the max are taken.
    let v: Vec<f32> = values(dims.c, 5).iter().map(|v| v / 2.0 - 1.5).collect();
    let what = format!("EvoNorm-B0 ({variance:?} variance), {dims:?}");
    let (y, mean, var) = match variance {
        B0Variance::Batch => evonorm_b0(&x, [&v, &gamma, &beta], dims, EPSILON),
        B0Variance::Running => {
            // Positive, and about the inputs' spread, so that both branches are taken.
            let running: Vec<f32> = values(dims.c, 11).iter().map(|v| v.abs() + 0.5).collect();
            let per_channel = [&v[..], &gamma, &beta, &running];
            let y = evonorm_b0_inference(&x, per_channel, dims, EPSILON);
            (y, Vec::new(), running)
        }
    };
    let [dx, dv, dgamma, dbeta] =
        evonorm_b0_backward(&x, &dy, [&v, &gamma, &var], dims, EPSILON, variance);
    if dims.len() == 0 {
        assert!(y.is_empty() && dx.is_empty(), "{what}");
        for stat in [dv, dgamma, dbeta] {
            assert_eq!(stat, vec![0.0; dims.c], "{what}");
        }
        if variance == B0Variance::Batch {
            assert_eq!(
                [mean, var],
                [vec![0.0; dims.c], vec![0.0; dims.c]],
                "{what}"
            );
        }
        return;
    }
    let Dims { n, c, s } = dims;
    let stats = |set: &[usize]| {
        let count = set.len() as f64;
        let mean = set.iter().map(|&i| x[i] as f64).sum::<f64>() / count;
        let var = set
            .iter()
            .map(|&i| (x[i] as f64 - mean).powi(2))
            .sum::<f64>()
            / count;
        (mean, var)
    };
    let mut want_y = vec![0.0f64; x.len()];
    let mut want_dx = vec![0.0f64; x.len()];
    let mut want_params = [vec![0.0f64; c], vec![0.0; c], vec![0.0; c]];
    let (mut want_mean, mut want_var, mut dx_scale) = (Vec::new(), Vec::new(), 1.0f64);
    for (channel, set) in channel_sets(dims, &[n]).iter().enumerate() {
        let (mean_b, var_b) = stats(set);
        let a = match variance {
            B0Variance::Batch => (var_b + EPSILON).sqrt(),
            B0Variance::Running => (var[channel] as f64 + EPSILON).sqrt(),
        };
        let (vc, gc) = (v[channel] as f64, gamma[channel] as f64);
        // q = d L / d d per value, and the sums that reach the two variances.
        let mut q_batch = 0.0;
        let mut per_sample = vec![(0.0f64, 0.0f64, 0.0f64); n];
        for (sample, q_sum) in per_sample.iter_mut().enumerate() {
            let start = (sample * c + channel) * s;
            let segment: Vec<usize> = (start..start + s).collect();
            let (mean_i, var_i) = stats(&segment);
            let b = (var_i + EPSILON).sqrt();
            let mut q_other = 0.0;
            for &i in &segment {
                let xi = x[i] as f64;
                let d = a.max(vc * xi + b);
                let g = dy[i] as f64 * gc;
                let q = -g * xi / (d * d);
                want_y[i] = xi / d * gc + beta[channel] as f64;
                want_dx[i] = g / d;
                dx_scale = dx_scale.max((g / d).abs());
                if a >= vc * xi + b {
                    q_batch += q;
                } else {
                    q_other += q;
                    want_dx[i] += vc * q;
                    want_params[0][channel] += q * xi;
                }
                want_params[1][channel] += dy[i] as f64 * xi / d;
                want_params[2][channel] += dy[i] as f64;
            }
            *q_sum = (q_other, mean_i, b);
        }
        // A running variance is a constant: no gradient reaches `x` through it.
        if variance == B0Variance::Running {
            q_batch = 0.0;
        }
        for (sample, &(q_other, mean_i, b)) in per_sample.iter().enumerate() {
            let start = (sample * c + channel) * s;
            for i in start..start + s {
                let xi = x[i] as f64;
                want_dx[i] += q_other / (b * s as f64) * (xi - mean_i)
                    + q_batch / (a * (n * s) as f64) * (xi - mean_b);
            }
        }
        want_mean.push(mean_b);
        want_var.push(var_b);
    }
    assert_close(&format!("{what}: y"), &y, &want_y);
    if variance == B0Variance::Batch {
        assert_close(&format!("{what}: mean"), &mean, &want_mean);
        assert_close(&format!("{what}: var"), &var, &want_var);
    }
    assert_close_at(&format!("{what}: dx"), &dx, &want_dx, dx_scale);
    let [want_dv, want_dgamma, want_dbeta] = &want_params;
    assert_close(&format!("{what}: dv"), &dv, want_dv);
    assert_close(&format!("{what}: dgamma"), &dgamma, want_dgamma);
    assert_close(&format!("{what}: dbeta"), &dbeta, want_dbeta);
}

#[test]
fn frn_matches_f64_at_every_edge() {
    for dims in shapes() {
        let (x, dy, gamma, beta) = inputs(dims);
        // Thresholds about the outputs' middle, so that the unit holds some values and passes
        // others in most rows.
        let tau: Vec<f32> = (0..dims.c)
            .map(|c| beta[c] + 0.1 * (c as f32 - 1.0))
            .collect();
        let what = format!("FRN, {dims:?}");
        let (y, nu2) = frn(&x, [&gamma, &beta, &tau], dims, EPSILON);
        let params = [&gamma[..], &beta[..], &tau[..], &nu2[..]];
        let (dx, [dgamma, dbeta, dtau], d_epsilon) = frn_backward(&x, &dy, params, dims, EPSILON);
        if dims.len() == 0 {
            assert!(y.is_empty() && dx.is_empty(), "{what}");
            assert_eq!(nu2, vec![0.0; dims.n * dims.c], "{what}");
            for grads in [dgamma, dbeta, dtau] {
                assert_eq!(grads, vec![0.0; dims.c], "{what}");
            }
            assert_eq!(d_epsilon, 0.0, "{what}");
            continue;
        }
        // In f64, with the unit passing a value where the kernel's output is above `tau` (a
        // value within rounding of `tau` may go either way; the output check covers the rest).
        let mut want_y = vec![0.0f64; x.len()];
        let mut want_dx = vec![0.0f64; x.len()];
        let mut want_nu2 = Vec::new();
        let mut want_params = [vec![0.0f64; dims.c], vec![0.0; dims.c], vec![0.0; dims.c]];
        let (mut want_epsilon, mut epsilon_scale, mut dx_scale) = (0.0f64, 1.0f64, 1.0f64);
        for row in 0..dims.n * dims.c {
            let channel = row % dims.c;
            let at = row * dims.s..(row + 1) * dims.s;
            let nu2 = at.clone().map(|i| (x[i] as f64).powi(2)).sum::<f64>() / dims.s as f64;
            let rstd = 1.0 / (nu2 + EPSILON).sqrt();
            let (g, b, t) = (
                gamma[channel] as f64,
                beta[channel] as f64,
                tau[channel] as f64,
            );
            let passed = |i: usize| {
                if y[i] > tau[channel] {
                    dy[i] as f64
                } else {
                    0.0
                }
            };
            let sum_g_x: f64 = at.clone().map(|i| passed(i) * x[i] as f64).sum();
            for i in at.clone() {
                want_y[i] = (x[i] as f64 * g * rstd + b).max(t);
                want_dx[i] =
                    g * rstd * passed(i) - g * rstd.powi(3) * x[i] as f64 * sum_g_x / dims.s as f64;
                dx_scale = dx_scale.max((g * rstd * dy[i] as f64).abs());
                want_params[1][channel] += passed(i);
                want_params[2][channel] += dy[i] as f64 - passed(i);
                let term = -0.5 * rstd.powi(3) * g * passed(i) * x[i] as f64;
                want_epsilon += term;
                epsilon_scale += term.abs();
            }
            want_params[0][channel] += rstd * sum_g_x;
            want_nu2.push(nu2);
        }
        assert_close(&format!("{what}: y"), &y, &want_y);
        assert_close(&format!("{what}: nu2"), &nu2, &want_nu2);
        assert_close_at(&format!("{what}: dx"), &dx, &want_dx, dx_scale);
        let names = ["dgamma", "dbeta", "dtau"];
        for ((name, got), want) in names.iter().zip([dgamma, dbeta, dtau]).zip(&want_params) {
            assert_close(&format!("{what}: {name}"), &got, want);
        }
        assert!(
            (d_epsilon - want_epsilon).abs() <= 1e-5 * epsilon_scale,
            "{what}: epsilon gradient {d_epsilon}, not {want_epsilon}"
        );
    }
}

/// Batch norm's per-channel maps and gradient maps give the same bits on every instruction set
/// this CPU has, as a channel's push of the same formulas would, for channel counts of none,
/// one and one off every `f64` vector width (2, 4, 8).
#[test]
fn batch_maps_give_the_same_bits_on_every_instruction_set() {
    use crate::kernel::fused::simd::tests::{on_every_arch, same_bits};
    use macerator::{Arch, WithSimd};

    fn bits(values: &[Vec<f32>]) -> Vec<Vec<u32>> {
        values
            .iter()
            .map(|v| v.iter().map(|x| x.to_bits()).collect())
            .collect()
    }
    for c in [0, 1, 2, 3, 4, 5, 7, 8, 9, 17, 33] {
        let shift = values(c, 1);
        let (gamma, beta, var) = (values(c, 2), values(c, 3), values(c, 4));
        let var: Vec<f32> = var.iter().map(|v| v.abs()).collect();
        let sums: Vec<[f64; 2]> = (0..c)
            .map(|i| [i as f64 * 0.37 - 1.0, 5.0 + i as f64 * 0.11])
            .collect();
        let grad_sums: Vec<[f64; 3]> = (0..c)
            .map(|i| {
                [
                    0.3 - i as f64 * 0.07,
                    i as f64 * 0.19 - 2.0,
                    0.01 * i as f64,
                ]
            })
            .collect();
        let maps = on_every_arch!(-> Vec<Vec<u32>>;
            shift: &'a [f32] = &shift, sums: &'a [[f64; 2]] = &sums,
            params: [&'a [f32]; 2] = [&gamma, &beta]; {
            let mut out = vec![vec![f32::NAN; shift.len()]; 4];
            let [a, b, m, v] = &mut out[..] else { unreachable!() };
            batch_map_values_impl::<S, f32>(shift, sums, 12, params, 1e-5, [a, b, m, v]);
            bits(&out)
        });
        same_bits(&format!("batch maps of {c} channels"), &maps);
        // The formulas channel by channel, as `ChannelMap::push` keeps them.
        let mut want = ChannelMap {
            centre: Vec::new(),
            scale: Vec::new(),
            shift: Vec::new(),
        };
        let (mut means, mut vars) = (Vec::new(), Vec::new());
        for channel in 0..c {
            let (centre, var) = moments(shift[channel], sums[channel], 12, true);
            let scale = gamma[channel].to_f64() / (var + 1e-5).sqrt();
            want.push(centre, scale, beta[channel].to_f64());
            means.push(centre.mean() as f32);
            vars.push(var as f32);
        }
        assert_eq!(maps[0].1, bits(&[want.scale, want.shift, means, vars]));

        let grads = on_every_arch!(-> Vec<Vec<u32>>;
            shift: &'a [f32] = &shift, sums: &'a [[f64; 3]] = &grad_sums,
            params: [&'a [f32]; 2] = [&gamma, &var]; {
            let mut out = vec![vec![f32::NAN; shift.len()]; 5];
            let [p, s, o, dg, db] = &mut out[..] else { unreachable!() };
            batch_gradient_values_impl::<S, f32>(shift, sums, 12, params, 1e-5, [p, s, o, dg, db]);
            bits(&out)
        });
        same_bits(&format!("batch gradient maps of {c} channels"), &grads);
        assert!(
            grads[0]
                .1
                .iter()
                .flatten()
                .all(|&v| !f32::from_bits(v).is_nan())
        );
    }
}
