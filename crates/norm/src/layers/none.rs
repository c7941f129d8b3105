//! The norm that is none: its input passes through.

use burn::prelude::*;

use crate::NormError;
use crate::family::Family;

/// The "none" choice: passes its input through, still checking its shape (and zeroing padded
/// sequence steps, like every layer).
#[derive(Module, Debug)]
pub struct NoNorm {
    num_features: usize,
}

impl NoNorm {
    pub(crate) fn new(num_features: usize) -> Self {
        Self { num_features }
    }
}

impl Family for NoNorm {
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
