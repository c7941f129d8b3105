//! Weight Standardization (Qiao et al. 2019): a layer's weights standardized per output unit
//! before use, which smooths the loss landscape as batch norm does, without any batch
//! statistic. Meant to be combined with group or layer norm.

use burn::prelude::*;

/// The default `epsilon` of [`standardize_weights`].
pub const WEIGHT_STANDARDIZATION_EPSILON: f64 = 1e-5;

/// `weight` with each slice along `output_axis` (one output unit: a conv filter is
/// `weight[o, ..]` of `[out, in, kh, kw]`; a burn `Linear` column is `weight[.., o]` of
/// `[in, out]`) standardized over all its other entries: `(w - mean) / sqrt(var + epsilon)`, the
/// variance biased, as in the paper's equation. Differentiable: the gradient flows through the
/// mean and variance.
pub fn standardize_weights<const D: usize>(
    weight: Tensor<D>,
    output_axis: usize,
    epsilon: f64,
) -> Tensor<D> {
    let dims: Vec<usize> = (0..D).filter(|&d| d != output_axis).collect();
    let mean = weight.clone().mean_dims(&dims);
    let centered = weight - mean;
    let var = centered.clone().square().mean_dims(&dims);
    centered / (var + epsilon).sqrt()
}
