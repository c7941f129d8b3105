//! The weights a layer computes with: its own, or standardized (Weight Standardization, Qiao et
//! al. 2019) when the model asks for it.

use burn::module::Param;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use normlab_norm::{WEIGHT_STANDARDIZATION_EPSILON, standardize_weights};

/// `conv(x)` for the model's "same" convolutions (stride 1), with each output filter of the
/// kernel standardized first when `standardize`.
pub(crate) fn conv_forward(conv: &Conv2d, standardize: bool, x: Tensor<4>) -> Tensor<4> {
    if !standardize {
        return conv.forward(x);
    }
    let weight = standardize_weights(conv.weight.val(), 0, WEIGHT_STANDARDIZATION_EPSILON);
    let same = conv.kernel_size.map(|k| {
        let total = k - 1;
        (total / 2, total - total / 2)
    });
    let options = ConvOptions::new_with_padding([1, 1], same, [1, 1], 1);
    conv2d(x, weight, conv.bias.as_ref().map(Param::val), options)
}

/// `linear(x)`, with each output unit's weights (a column of burn's `[in, out]`) standardized
/// first when `standardize`.
pub(crate) fn linear_forward(linear: &Linear, standardize: bool, x: Tensor<2>) -> Tensor<2> {
    if !standardize {
        return linear.forward(x);
    }
    let weight = standardize_weights(linear.weight.val(), 1, WEIGHT_STANDARDIZATION_EPSILON);
    burn::tensor::module::linear(x, weight, linear.bias.as_ref().map(Param::val))
}

/// The convolution with a fixed `weight` (eval only: a computed tensor cannot become a
/// parameter of a training model).
pub(crate) fn with_weight(conv: &Conv2d, weight: Tensor<4>) -> Conv2d {
    Conv2d {
        weight: Param::from_tensor(weight),
        ..conv.clone()
    }
}
