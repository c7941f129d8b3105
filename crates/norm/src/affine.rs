use burn::module::Param;
use burn::prelude::*;

/// The learnable per-feature scale `gamma` and shift `beta` that follow a normalization.
#[derive(Module, Debug)]
pub struct Affine {
    /// Scale, shape `[features]`.
    pub gamma: Param<Tensor<1>>,
    /// Shift, shape `[features]`.
    pub beta: Param<Tensor<1>>,
}

impl Affine {
    pub(crate) fn new(num_features: usize, gamma_init: f64, device: &Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::full([num_features], gamma_init, device)),
            beta: Param::from_tensor(Tensor::zeros([num_features], device)),
        }
    }

    /// Scales and shifts channel `c` of `x: [N, C, S]`.
    pub(crate) fn apply(&self, x: Tensor<3>) -> Tensor<3> {
        let shape = [1, self.gamma.dims()[0], 1];
        x * self.gamma.val().reshape(shape) + self.beta.val().reshape(shape)
    }
}

/// Applies `affine` when the layer has one.
pub(crate) fn apply_affine(affine: &Option<Affine>, x: Tensor<3>) -> Tensor<3> {
    match affine {
        Some(affine) => affine.apply(x),
        None => x,
    }
}
