//! The learnable `gamma` and `beta` after a normalization.

use burn::module::Param;
use burn::prelude::*;

use crate::NormError;

/// The learnable per-feature scale `gamma` and shift `beta` that follow a normalization.
///
/// Read them with [`gamma`](Affine::gamma) and [`beta`](Affine::beta) (on an autodiff device the
/// returned tensors carry the parameters' gradients), replace them with
/// [`NormLayer::set_affine`](crate::NormLayer::set_affine), and stop them from training with
/// [`freeze`](Affine::freeze).
#[derive(Module, Debug)]
pub struct Affine {
    gamma: Param<Tensor<1>>,
    beta: Param<Tensor<1>>,
}

impl Affine {
    /// An affine from given `gamma` and `beta`, both `[features]`.
    pub fn new(gamma: Tensor<1>, beta: Tensor<1>) -> Result<Self, NormError> {
        let [features] = gamma.dims();
        if beta.dims() != [features] {
            return Err(NormError::ShapeMismatch {
                layer: "Affine".into(),
                expected: format!("beta of shape [{features}] like gamma"),
                got: beta.dims().to_vec(),
            });
        }
        Ok(Self {
            gamma: Param::from_tensor(gamma),
            beta: Param::from_tensor(beta),
        })
    }

    /// `gamma` filled with `gamma_init`, `beta` with zeros.
    pub(crate) fn init(num_features: usize, gamma_init: f64, device: &Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::full([num_features], gamma_init, device)),
            beta: Param::from_tensor(Tensor::zeros([num_features], device)),
        }
    }

    /// The scale, `[features]`.
    pub fn gamma(&self) -> Tensor<1> {
        self.gamma.val()
    }

    /// The shift, `[features]`.
    pub fn beta(&self) -> Tensor<1> {
        self.beta.val()
    }

    /// The number of features.
    pub fn num_features(&self) -> usize {
        self.gamma.dims()[0]
    }

    /// The same parameters, no longer trained: optimizers leave them as they are.
    pub fn freeze(self) -> Self {
        Self {
            gamma: self.gamma.set_require_grad(false),
            beta: self.beta.set_require_grad(false),
        }
    }

    /// Scales and shifts channel `c` of `x: [N, C, S]`.
    pub(crate) fn apply(&self, x: Tensor<3>) -> Tensor<3> {
        let shape = [1, self.num_features(), 1];
        x * self.gamma().reshape(shape) + self.beta().reshape(shape)
    }
}

/// Applies `affine` when the layer has one.
pub(crate) fn apply_affine(affine: Option<&Affine>, x: Tensor<3>) -> Tensor<3> {
    match affine {
        Some(affine) => affine.apply(x),
        None => x,
    }
}
