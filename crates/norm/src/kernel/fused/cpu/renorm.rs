//! Batch renormalization in training on the CPU (Ioffe 2017): batch norm's two passes each way,
//! with the correction towards the moving statistics folded into each channel's map.
//!
//! Forward: `y = (x - mu_B) / sigma_B * gamma r + gamma d + beta`, with
//! `r = clip(sigma_B / sigma, 1 / r_max, r_max)` and `d = clip((mu_B - mu) / sigma, -d_max,
//! d_max)` per channel, `mu` and `sigma` the moving statistics. `r` and `d` are constants to the
//! gradient, so the backward is batch norm's with `gamma r` for `gamma`, and
//! `dgamma = r Σ dy x_hat + d Σ dy`.

use super::{
    ChannelMap, Dims, Real, batch_gradient_maps, channel_grad_sums, channel_stat_sums, moments,
    output, per_sample, written,
};

/// The forward: the output, and `[mu_B, var_B, r, d]`, each `[C]`, one after another (`var_B`
/// biased). `moving` is `[mu, sigma]`, each `[C]`; `bounds` is `[r_max, d_max]`.
pub(crate) fn batch_renorm<T: Real>(
    x: &[T],
    [gamma, beta]: [&[T]; 2],
    [mu, sigma]: [&[T]; 2],
    dims: Dims,
    [r_max, d_max]: [f64; 2],
    epsilon: f64,
) -> (Vec<T>, Vec<T>) {
    dims.check(x, &[gamma, beta, mu, sigma]);
    if dims.len() == 0 {
        return (Vec::new(), vec![T::default(); 4 * dims.c]);
    }
    let (shift, sums) = channel_stat_sums(x, dims);
    let mut stats = [(); 4].map(|_| Vec::with_capacity(dims.c));
    let mut map = ChannelMap::with_capacity(dims.c);
    for (channel, &sums) in sums.iter().enumerate() {
        let (centre, var) = moments(shift[channel], sums, dims.n * dims.s, true);
        let sigma_b = (var + epsilon).sqrt();
        let moving_sigma = sigma[channel].to_f64();
        let r = (sigma_b / moving_sigma).clamp(1.0 / r_max, r_max);
        let d = ((centre.mean() - mu[channel].to_f64()) / moving_sigma).clamp(-d_max, d_max);
        let g = gamma[channel].to_f64();
        map.push(centre, g * r / sigma_b, g * d + beta[channel].to_f64());
        for (stat, value) in stats.iter_mut().zip([centre.mean(), var, r, d]) {
            stat.push(T::from_f64(value));
        }
    }
    let mut out = output(dims.len());
    per_sample(&mut out, dims, |out, at| map.apply(out, &x[at], dims.s));
    // SAFETY: `per_sample` hands every sample's values of `out` to `apply`, which writes them
    // all (see there).
    (unsafe { written(out) }, stats.concat())
}

/// The backward of [`batch_renorm`]: `(dx, dgamma, dbeta)` from the output gradient `dy` and
/// the `[mu_B, var_B, r, d]` the forward returned.
pub(crate) fn batch_renorm_backward<T: Real>(
    x: &[T],
    dy: &[T],
    gamma: &[T],
    stats: &[T],
    dims: Dims,
    epsilon: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    dims.check(x, &[gamma]);
    assert_eq!(dy.len(), x.len(), "output gradient of {dims:?}");
    assert_eq!(stats.len(), 4 * dims.c, "statistics of {dims:?}");
    if dims.len() == 0 {
        let zeros = vec![T::default(); dims.c];
        return (Vec::new(), zeros.clone(), zeros);
    }
    let [_, var, r, d] = [0, 1, 2, 3].map(|k| &stats[k * dims.c..(k + 1) * dims.c]);
    let gamma_r: Vec<T> = gamma
        .iter()
        .zip(r)
        .map(|(g, r)| T::from_f64(g.to_f64() * r.to_f64()))
        .collect();
    let (shift, sums) = channel_grad_sums(x, dy, dims);
    let count = dims.n * dims.s;
    let (map, dgamma_r, dbeta) = batch_gradient_maps(&shift, &sums, count, &gamma_r, var, epsilon);
    // `y` depends on `gamma` through `gamma r` (times `x_hat`) and `gamma d`.
    let dgamma = dgamma_r
        .iter()
        .zip(&dbeta)
        .zip(r.iter().zip(d))
        .map(|((&dg, &db), (&r, &d))| {
            T::from_f64(r.to_f64() * dg.to_f64() + d.to_f64() * db.to_f64())
        })
        .collect();
    let mut dx = output(dims.len());
    per_sample(&mut dx, dims, |dx, at| {
        map.apply(dx, &x[at.clone()], &dy[at], dims.s)
    });
    // SAFETY: `per_sample` hands every sample's values of `dx` to `apply`, which writes them
    // all (see there).
    (unsafe { written(dx) }, dgamma, dbeta)
}
