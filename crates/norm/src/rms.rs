use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::affine::{Affine, apply_affine};
use crate::config::{check_epsilon, check_features, check_gamma_init};
use crate::norm_layer::normalize_each_step;
use crate::{NormError, NormLayer};

/// Configuration of [`RmsNorm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RmsNormConfig {
    /// Added to the mean square before the square root. Default `f32::EPSILON` (about
    /// `1.19e-7`), which is what PyTorch's `RMSNorm(eps=None)` uses for f32.
    pub epsilon: f64,
    /// Learn a per-feature `gamma` (and a `beta`, which PyTorch's `RMSNorm` does not have).
    /// Default `true`.
    pub affine: bool,
    /// Initial value of `gamma`. Default `1.0`.
    pub gamma_init: f64,
}

impl Default for RmsNormConfig {
    fn default() -> Self {
        Self {
            epsilon: f32::EPSILON as f64,
            affine: true,
            gamma_init: 1.0,
        }
    }
}

impl RmsNormConfig {
    pub fn with_epsilon(self, epsilon: f64) -> Self {
        Self { epsilon, ..self }
    }

    pub fn with_affine(self, affine: bool) -> Self {
        Self { affine, ..self }
    }

    pub(crate) fn validate(&self) -> Result<(), NormError> {
        check_epsilon(self.epsilon)?;
        check_gamma_init(self.gamma_init)
    }

    /// Builds the layer for `num_features` features.
    pub fn init(&self, num_features: usize, device: &Device) -> Result<RmsNorm, NormError> {
        check_features(num_features)?;
        self.validate()?;
        Ok(RmsNorm {
            affine: self
                .affine
                .then(|| Affine::new(num_features, self.gamma_init, device)),
            num_features,
            epsilon: self.epsilon,
        })
    }
}

/// Root-mean-square normalization (Zhang & Sennrich, 2019): layer norm without subtracting the
/// mean, `x / sqrt(mean(x²) + eps)`, over the same axes as [`LayerNorm`](crate::LayerNorm).
///
/// Matches PyTorch's `RMSNorm` over the same shape. **Deliberate difference:** with `affine` the
/// layer also learns a `beta` (initialised to 0, so it starts identical); PyTorch's has only the
/// weight. Like [`LayerNorm`](crate::LayerNorm), its affine is per channel on conv input.
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub affine: Option<Affine>,
    pub num_features: usize,
    pub epsilon: f64,
}

impl NormLayer for RmsNorm {
    fn describe(&self) -> String {
        format!("RmsNorm({} features)", self.num_features)
    }

    fn num_features(&self) -> usize {
        self.num_features
    }

    /// `x: [N, C, S] -> [N, C, S]`, root mean square per sample over `C` and `S`.
    fn normalize(&self, x: Tensor<3>, weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError> {
        let [n, c, s] = x.dims();
        let mean_square = match weights {
            None => x.clone().square().mean_dims(&[1, 2]),
            Some(w) => {
                let w = w.expand([n, c, s]);
                let count = w.clone().sum_dims(&[1, 2]).clamp_min(1.0);
                (x.clone().square() * w).sum_dims(&[1, 2]) / count
            }
        };
        let x_hat = x / (mean_square + self.epsilon).sqrt();
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
