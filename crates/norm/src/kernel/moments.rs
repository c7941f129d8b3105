//! Means and variances over chosen axes, with padding excluded, computed so that f32 keeps its
//! precision for large-mean, small-variance data.

use burn::prelude::*;

/// The statistics of `x` over some axes, kept as size-1 axes so they broadcast back onto `x`.
pub(crate) struct Moments {
    /// `x - mean`, computed from the data without rounding the mean first.
    pub centered: Tensor<3>,
    pub mean: Tensor<3>,
    /// Biased (population) variance.
    pub var: Tensor<3>,
    /// How many elements each statistic was taken over.
    pub count: Tensor<3>,
}

/// Mean and biased variance of `x` over `dims`, counting only the elements where `weights` is 1.
///
/// `weights` holds 0/1 and broadcasts to `x`. This is the corrected two-pass algorithm (Chan,
/// Golub and LeVeque): after centring on a first estimate of the mean, the residual mean of the
/// centred data is subtracted too. A naive `E[x²] - E[x]²` loses every digit of a variance of
/// 1e-4 around a mean of 1e4 in f32; plain two-pass keeps the rounding error of the first mean.
pub(crate) fn moments(x: Tensor<3>, weights: Option<Tensor<3>>, dims: &[usize]) -> Moments {
    let shape = x.dims();
    let (first_mean, count, weights) = match weights {
        None => {
            let n: usize = dims.iter().map(|&d| shape[d]).product();
            let count = Tensor::full([1, 1, 1], n as f64, &x.device());
            (x.clone().mean_dims(dims), count, None)
        }
        Some(w) => {
            let w = w.expand(shape);
            // A statistic over nothing but padding is never used; 1 keeps it finite.
            let count = w.clone().sum_dims(dims).clamp_min(1.0);
            let first = (x.clone() * w.clone()).sum_dims(dims) / count.clone();
            (first, count, Some(w))
        }
    };
    let deviation = x - first_mean.clone();
    let weighted = match &weights {
        Some(w) => deviation.clone() * w.clone(),
        None => deviation.clone(),
    };
    let residual = weighted.clone().sum_dims(dims) / count.clone();
    let var = ((weighted * deviation.clone()).sum_dims(dims) / count.clone()
        - residual.clone().square())
    .clamp_min(0.0);
    Moments {
        centered: deviation - residual.clone(),
        mean: first_mean + residual,
        var,
        count,
    }
}
