//! EvoNorm-B0 (Liu et al. 2020): a batch variance and a per-sample one, its own activation.

use burn::module::{Flag, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::affine::apply_affine;
use crate::family::{Family, is_training};
use crate::kernel::{evonorm_b0_inference, evonorm_b0_train, fused_on_flex, moments};
use crate::layers::{CommonParts, common_parts};
use crate::options::{CheckOptions, builder, check_common};
use crate::running::Spread;
use crate::{Momentum, NormError, RunningStats, RunningVariance};

/// Configuration of [`EvoNormB0`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvoNormB0Config {
    /// Added to both variances before their square roots. Default `1e-5`, the paper's.
    pub epsilon: f64,
    /// How the running variance folds in each batch. Default `0.1` (the official code's decay
    /// 0.9).
    pub momentum: Momentum,
    /// Which batch variance the running variance averages. Default biased, as the official
    /// code (timm keeps the unbiased one).
    pub running_variance: RunningVariance,
    /// Learn a per-channel `gamma` and `beta`. Default `true`.
    pub affine: bool,
    /// Initial value of `gamma`. Default `1.0`.
    pub gamma_init: f64,
}

impl Default for EvoNormB0Config {
    fn default() -> Self {
        Self {
            epsilon: 1e-5,
            momentum: Momentum::default(),
            running_variance: RunningVariance::Biased,
            affine: true,
            gamma_init: 1.0,
        }
    }
}

builder!(EvoNormB0Config {
    with_epsilon => epsilon: f64,
    with_momentum => momentum: Momentum,
    with_running_variance => running_variance: RunningVariance,
    with_affine => affine: bool,
    with_gamma_init => gamma_init: f64,
});

impl CheckOptions for EvoNormB0Config {
    fn check_options(&self, _num_features: usize) -> Result<(), NormError> {
        check_common(self.epsilon, self.gamma_init, Some(self.momentum))
    }
}

impl EvoNormB0Config {
    /// Builds the layer for `num_features` channels, in training mode.
    pub fn init(&self, num_features: usize, device: &Device) -> Result<EvoNormB0, NormError> {
        self.check(num_features)?;
        let momentum = self.momentum;
        Ok(EvoNormB0 {
            parts: common_parts!(self, num_features, device),
            running: RunningStats::new(1, num_features, momentum, self.running_variance, device),
            training: Param::from_bool(true),
            v: Param::from_tensor(Tensor::ones([num_features], device)),
        })
    }
}

/// EvoNorm-B0 (Liu, Brock, Simonyan & Le 2020): a norm and activation in one, found by search,
/// that mixes a batch statistic and a per-sample one:
/// `y = x / max(sqrt(var_B + eps), v * x + sqrt(var_I + eps)) * gamma + beta`.
///
/// `var_B` is the batch variance of a channel over `N` and the positions in training (folded
/// into a running variance, used in eval, like batch norm); `var_I` the variance of one `(n, c)`
/// over its positions (none on dense input: `var_I = 0`); `v` is learned per channel (starting
/// at 1). It brings its own activation
/// ([`Norm::includes_activation`](crate::Norm::includes_activation)). A training batch with one
/// value per feature is an error, as for batch norm.
#[derive(Module, Debug)]
pub struct EvoNormB0 {
    parts: CommonParts,
    running: RunningStats,
    training: Param<Flag>,
    v: Param<Tensor<1>>,
}

impl EvoNormB0 {
    /// The learned slope `v`, `[features]`.
    pub fn v(&self) -> Tensor<1> {
        self.v.val()
    }
}

impl Family for EvoNormB0 {
    fn describe(&self) -> String {
        format!("EvoNormB0({} features)", self.parts.num_features)
    }

    family_fields!(parts, running);

    fn includes_activation(&self) -> bool {
        true
    }

    /// `x: [N, C, S] -> [N, C, S]`: the batch variance per channel, the instance variance per
    /// (sample, channel).
    fn normalize(&self, x: Tensor<3>, weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError> {
        let [n, c, s] = x.dims();
        let epsilon = self.parts.epsilon;
        let batch_var = match is_training(&x, self.training.is_enabled()) {
            true if n * s < 2 => {
                return Err(NormError::SingleValueStatistics {
                    layer: self.describe(),
                    shape: vec![n, c, s],
                    over: "per feature in the batch",
                });
            }
            true if weights.is_none() && fused_on_flex(&x, self.parts.kernels) => {
                let affine = self.parts.affine.as_ref();
                let (y, mean, var) = evonorm_b0_train(x, self.v.val(), affine, epsilon);
                let kernels = self.parts.kernels;
                self.running.fold_batch(0, [mean, var], n * s, kernels);
                return Ok(y);
            }
            true => {
                let stats = moments(x.clone(), weights.clone(), &[0, 2]);
                let var = self
                    .running
                    .variance_estimate(stats.var.clone(), stats.count);
                let mean = stats.mean.detach().reshape([1, c]);
                let spread = Spread::Variance(var.detach().reshape([1, c]));
                self.running.update(0, mean, spread, None);
                stats.var
            }
            false if weights.is_none() && fused_on_flex(&x, self.parts.kernels) => {
                let var = self.running.read(0, 1, &x.device()).1;
                let affine = self.parts.affine.as_ref();
                return Ok(evonorm_b0_inference(x, self.v.val(), var, affine, epsilon));
            }
            false => self.running.read(0, 1, &x.device()).1.reshape([1, c, 1]),
        };
        let instance = moments(x.clone(), weights, &[2]).var;
        let v = self.v.val().reshape([1, c, 1]);
        let per_sample = v * x.clone() + (instance + epsilon).sqrt();
        let batch = (batch_var + epsilon).sqrt().expand([n, c, s]);
        let y = x / batch.max_pair(per_sample);
        Ok(apply_affine(self.parts.affine.as_ref(), y))
    }
}
