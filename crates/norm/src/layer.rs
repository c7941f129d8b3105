use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::affine::{Affine, apply_affine};
use crate::config::{check_epsilon, check_features, check_gamma_init};
use crate::group::normalize_groups;
use crate::norm_layer::normalize_each_step;
use crate::{NormError, NormLayer};

/// Configuration of [`LayerNorm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LayerNormConfig {
    /// Added to the variance before the square root. Default `1e-5`.
    pub epsilon: f64,
    /// Learn a per-feature `gamma` and `beta`. Default `true`.
    pub affine: bool,
    /// Initial value of `gamma`. Default `1.0` (the LN-LSTM and recurrent-BN papers use `0.1`
    /// inside a recurrence).
    pub gamma_init: f64,
}

impl Default for LayerNormConfig {
    fn default() -> Self {
        Self {
            epsilon: 1e-5,
            affine: true,
            gamma_init: 1.0,
        }
    }
}

impl LayerNormConfig {
    pub fn with_epsilon(self, epsilon: f64) -> Self {
        Self { epsilon, ..self }
    }

    pub fn with_affine(self, affine: bool) -> Self {
        Self { affine, ..self }
    }

    pub fn with_gamma_init(self, gamma_init: f64) -> Self {
        Self { gamma_init, ..self }
    }

    pub(crate) fn validate(&self) -> Result<(), NormError> {
        check_epsilon(self.epsilon)?;
        check_gamma_init(self.gamma_init)
    }

    /// Builds the layer for `num_features` features.
    pub fn init(&self, num_features: usize, device: &Device) -> Result<LayerNorm, NormError> {
        check_features(num_features)?;
        self.validate()?;
        Ok(LayerNorm {
            affine: self
                .affine
                .then(|| Affine::new(num_features, self.gamma_init, device)),
            num_features,
            epsilon: self.epsilon,
        })
    }
}

/// Layer normalization (Ba, Kiros & Hinton, 2016): each sample is normalized over all of its
/// features.
///
/// - Dense `[N, F]`: over `F`, as PyTorch's `LayerNorm(F)`.
/// - Conv `[N, C, H, W]` (any spatial rank): over `C, H, W` together, as PyTorch's
///   `LayerNorm([C, H, W])` and `GroupNorm(1, C)`. **Deliberate difference:** `gamma` and `beta`
///   are per channel (`[C]`, as in `GroupNorm(1, C)`), not per element (`[C, H, W]`), so the layer
///   does not tie the model to one image size.
/// - Sequences `[N, T, F]`: over `F` at each step separately, as in the LN-LSTM.
#[derive(Module, Debug)]
pub struct LayerNorm {
    pub affine: Option<Affine>,
    pub num_features: usize,
    pub epsilon: f64,
}

impl NormLayer for LayerNorm {
    fn describe(&self) -> String {
        format!("LayerNorm({} features)", self.num_features)
    }

    fn num_features(&self) -> usize {
        self.num_features
    }

    /// `x: [N, C, S] -> [N, C, S]`, statistics per sample over `C` and `S`.
    fn normalize(&self, x: Tensor<3>, weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError> {
        let (x_hat, _) = normalize_groups(x, weights, 1, self.epsilon);
        Ok(apply_affine(&self.affine, x_hat))
    }

    fn normalize_sequence(
        &self,
        x: Tensor<3>,
        _weights: Option<Tensor<3>>,
    ) -> Result<Tensor<3>, NormError> {
        normalize_each_step(self, x)
    }
}
