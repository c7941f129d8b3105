use burn::prelude::*;

use crate::{Affine, BatchNorm, GroupNorm, InstanceNorm, LayerNorm, NormError, NormLayer, RmsNorm};

/// Any norm layer, as chosen by a [`NormConfig`](crate::NormConfig).
#[derive(Module, Debug)]
pub enum Norm {
    None(NoNorm),
    Batch(BatchNorm),
    Layer(LayerNorm),
    Instance(InstanceNorm),
    Group(GroupNorm),
    Rms(RmsNorm),
}

/// The "none" choice: passes its input through, still checking its shape.
#[derive(Module, Debug)]
pub struct NoNorm {
    pub num_features: usize,
}

impl NormLayer for NoNorm {
    fn describe(&self) -> String {
        format!("NoNorm({} features)", self.num_features)
    }

    fn num_features(&self) -> usize {
        self.num_features
    }

    fn normalize(&self, x: Tensor<3>, _weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError> {
        Ok(x)
    }
}

impl Norm {
    /// The layer's `gamma` and `beta` slot: `None` for the "none" choice, which has no slot;
    /// `Some(None)` for a layer built without affine. Lets a user read, replace or freeze them.
    pub fn affine_mut(&mut self) -> Option<&mut Option<Affine>> {
        match self {
            Self::None(_) => None,
            Self::Batch(l) => Some(&mut l.affine),
            Self::Layer(l) => Some(&mut l.affine),
            Self::Instance(l) => Some(&mut l.affine),
            Self::Group(l) => Some(&mut l.affine),
            Self::Rms(l) => Some(&mut l.affine),
        }
    }

    fn layer(&self) -> &dyn NormLayer {
        match self {
            Self::None(l) => l,
            Self::Batch(l) => l,
            Self::Layer(l) => l,
            Self::Instance(l) => l,
            Self::Group(l) => l,
            Self::Rms(l) => l,
        }
    }
}

impl NormLayer for Norm {
    fn describe(&self) -> String {
        self.layer().describe()
    }

    fn num_features(&self) -> usize {
        self.layer().num_features()
    }

    fn normalize(&self, x: Tensor<3>, weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError> {
        self.layer().normalize(x, weights)
    }

    fn normalize_sequence(
        &self,
        x: Tensor<3>,
        weights: Option<Tensor<3>>,
    ) -> Result<Tensor<3>, NormError> {
        self.layer().normalize_sequence(x, weights)
    }

    fn normalize_step(
        &self,
        x: Tensor<2>,
        step: usize,
        weights: Option<Tensor<2>>,
    ) -> Result<Tensor<2>, NormError> {
        self.layer().normalize_step(x, step, weights)
    }
}
