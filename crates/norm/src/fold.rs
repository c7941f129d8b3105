//! Folding an eval-mode batch norm into the layer before it: the norm's fixed per-channel map
//! `y = x * scale + shift` written into that layer's weights and bias, so inference computes
//! one layer instead of two.

use burn::module::Param;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use crate::{Norm, NormError};

/// `linear` followed by `norm` in eval, as one linear layer: `W' = W * scale` (per output
/// column), `b' = b * scale + shift`. The norm must have a fixed eval map
/// ([`Norm::eval_map`]): batch norm with running statistics, batch renormalization, a frozen
/// batch norm, or none.
pub fn fold_into_linear(linear: &Linear, norm: &Norm) -> Result<Linear, NormError> {
    let weight = linear.weight.val();
    let [_, outputs] = weight.dims();
    let device = weight.device();
    check_features(norm, outputs)?;
    let (scale, shift) = norm.eval_map(&device)?;
    let bias = linear
        .bias
        .as_ref()
        .map_or_else(|| Tensor::zeros([outputs], &device), Param::val);
    Ok(Linear {
        weight: Param::from_tensor(weight * scale.clone().unsqueeze_dim::<2>(0)),
        bias: Some(Param::from_tensor(bias * scale + shift)),
    })
}

/// `conv` followed by `norm` in eval, as one convolution: every output channel's kernel times
/// its `scale`, its bias `b * scale + shift`. The norm as for [`fold_into_linear`].
pub fn fold_into_conv2d(conv: &Conv2d, norm: &Norm) -> Result<Conv2d, NormError> {
    let weight = conv.weight.val();
    let [outputs, _, _, _] = weight.dims();
    let device = weight.device();
    check_features(norm, outputs)?;
    let (scale, shift) = norm.eval_map(&device)?;
    let bias = conv
        .bias
        .as_ref()
        .map_or_else(|| Tensor::zeros([outputs], &device), Param::val);
    Ok(Conv2d {
        weight: Param::from_tensor(weight * scale.clone().reshape([outputs, 1, 1, 1])),
        bias: Some(Param::from_tensor(bias * scale + shift)),
        ..conv.clone()
    })
}

fn check_features(norm: &Norm, outputs: usize) -> Result<(), NormError> {
    match norm.num_features() == outputs {
        true => Ok(()),
        false => Err(NormError::ShapeMismatch {
            layer: norm.describe(),
            expected: format!("the {outputs} outputs of the layer it folds into"),
            got: vec![norm.num_features()],
        }),
    }
}
