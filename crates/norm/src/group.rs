use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::affine::{Affine, apply_affine};
use crate::config::{check_epsilon, check_features, check_gamma_init};
use crate::stats::{Moments, moments};
use crate::{NormError, NormLayer};

/// Configuration of [`GroupNorm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupNormConfig {
    /// Number of channel groups; must divide the number of features. Default 32, as in the GN
    /// paper; 1 group is layer norm over `C, H, W`, `C` groups is instance norm.
    pub groups: usize,
    /// Added to the variance before the square root. Default `1e-5`.
    pub epsilon: f64,
    /// Learn a per-channel `gamma` and `beta`. Default `true`.
    pub affine: bool,
    /// Initial value of `gamma`. Default `1.0`.
    pub gamma_init: f64,
}

impl Default for GroupNormConfig {
    fn default() -> Self {
        Self {
            groups: 32,
            epsilon: 1e-5,
            affine: true,
            gamma_init: 1.0,
        }
    }
}

impl GroupNormConfig {
    /// A config with `groups` groups and every other option at its default.
    pub fn new(groups: usize) -> Self {
        Self {
            groups,
            ..Self::default()
        }
    }

    pub fn with_epsilon(self, epsilon: f64) -> Self {
        Self { epsilon, ..self }
    }

    pub fn with_affine(self, affine: bool) -> Self {
        Self { affine, ..self }
    }

    pub(crate) fn validate(&self, num_features: usize) -> Result<(), NormError> {
        check_features(num_features)?;
        check_epsilon(self.epsilon)?;
        check_gamma_init(self.gamma_init)?;
        if self.groups == 0 || !num_features.is_multiple_of(self.groups) {
            return Err(NormError::InvalidConfig {
                field: "groups",
                value: self.groups.to_string(),
                expected: format!("a divisor of num_features = {num_features}"),
            });
        }
        Ok(())
    }

    /// Builds the layer for `num_features` channels.
    pub fn init(&self, num_features: usize, device: &Device) -> Result<GroupNorm, NormError> {
        self.validate(num_features)?;
        Ok(GroupNorm {
            affine: self
                .affine
                .then(|| Affine::new(num_features, self.gamma_init, device)),
            groups: self.groups,
            num_features,
            epsilon: self.epsilon,
        })
    }
}

/// Group normalization (Wu & He, 2018): each sample's channels are split into groups, and each
/// group is normalized over its channels and all spatial positions (or time steps).
///
/// Matches PyTorch's `nn.GroupNorm`. Statistics never mix samples, so train and eval compute the
/// same thing at any batch size.
#[derive(Module, Debug)]
pub struct GroupNorm {
    pub affine: Option<Affine>,
    pub groups: usize,
    pub num_features: usize,
    pub epsilon: f64,
}

impl NormLayer for GroupNorm {
    fn describe(&self) -> String {
        format!(
            "GroupNorm({} features, {} groups)",
            self.num_features, self.groups
        )
    }

    fn num_features(&self) -> usize {
        self.num_features
    }

    /// `x: [N, C, S] -> [N, C, S]`, statistics per (sample, group).
    fn normalize(&self, x: Tensor<3>, weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError> {
        let (x_hat, _) = normalize_groups(x, weights, self.groups, self.epsilon);
        Ok(apply_affine(&self.affine, x_hat))
    }
}

/// Normalizes `x: [N, C, S]` per sample over groups of `C / groups` channels and all of `S`,
/// returning the normalized tensor and the statistics, shaped `[N, groups, 1]`.
///
/// Layer norm (one group) and instance norm (one group per channel) share this computation.
pub(crate) fn normalize_groups(
    x: Tensor<3>,
    weights: Option<Tensor<3>>,
    groups: usize,
    epsilon: f64,
) -> (Tensor<3>, Moments) {
    let [n, c, s] = x.dims();
    let grouped = [n, groups, c / groups * s];
    let weights = weights.map(|w| w.expand([n, c, s]).reshape(grouped));
    let stats = moments(x.reshape(grouped), weights, &[2]);
    let x_hat = stats.centered.clone() / (stats.var.clone() + epsilon).sqrt();
    (x_hat.reshape([n, c, s]), stats)
}
