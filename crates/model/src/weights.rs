//! The weights a layer computes with: its own, or standardized (Weight Standardization, Qiao et
//! al. 2019) when the model asks for it.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use normlab_norm::{WEIGHT_STANDARDIZATION_EPSILON, standardize_weights};

/// `conv(x)`, with each output filter of the kernel standardized first when `standardize`.
/// Symmetric padding without dilation or groups (every odd "same" kernel the model builds) runs
/// normlab's convolution ([`crate::conv`]); anything else burn's.
pub(crate) fn conv_forward(conv: &Conv2d, standardize: bool, x: Tensor<4>) -> Tensor<4> {
    let weight = match standardize {
        true => standardize_weights(conv.weight.val(), 0, WEIGHT_STANDARDIZATION_EPSILON),
        false => conv.weight.val(),
    };
    let bias = conv.bias.as_ref().map(Param::val);
    let [_, _, h, w] = x.dims();
    let [(top, bottom), (left, right)] = padding(conv, [h, w]);
    if top == bottom && left == right && conv.dilation == [1, 1] && conv.groups == 1 {
        return crate::conv::conv2d(x, weight, bias, conv.stride, [top, left]);
    }
    let padding = [(top, bottom), (left, right)];
    let options = ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups);
    conv2d(x, weight, bias, options)
}

/// The zero padding `(before, after)` of each axis that `conv` applies to an input of `size`,
/// by burn-nn's rules (its own function for this is private): "same" pads the least that keeps
/// `ceil(size / stride)` outputs, the smaller half before.
fn padding(conv: &Conv2d, size: [usize; 2]) -> [(usize, usize); 2] {
    match conv.padding {
        PaddingConfig2d::Valid => [(0, 0); 2],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Same => std::array::from_fn(|axis| {
            let (k, stride) = (conv.kernel_size[axis], conv.stride[axis]);
            let outputs = size[axis].div_ceil(stride);
            let total = ((outputs.max(1) - 1) * stride + k).saturating_sub(size[axis]);
            (total / 2, total - total / 2)
        }),
    }
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
