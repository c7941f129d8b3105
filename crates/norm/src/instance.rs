use burn::module::{Flag, Param};
use burn::prelude::*;
use burn::tensor::module::batch_norm;
use serde::{Deserialize, Serialize};

use crate::affine::{Affine, apply_affine};
use crate::config::{Momentum, RunningVariance, check_epsilon, check_features, check_gamma_init};
use crate::group::normalize_groups;
use crate::norm_layer::is_training;
use crate::running::RunningStats;
use crate::{NormError, NormLayer};

/// Configuration of [`InstanceNorm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstanceNormConfig {
    /// Added to the variance before the square root. Default `1e-5`.
    pub epsilon: f64,
    /// Learn a per-channel `gamma` and `beta`. Default `false`, as PyTorch's `InstanceNorm*d`
    /// (burn-nn defaults to `true`).
    pub affine: bool,
    /// Keep running statistics and use them in eval. Default `false`, as PyTorch.
    pub track_running_stats: bool,
    /// How running statistics fold in each batch (only with `track_running_stats`). Default
    /// `0.1`.
    pub momentum: Momentum,
    /// Which variance the running variance averages. Default unbiased.
    pub running_variance: RunningVariance,
    /// Initial value of `gamma`. Default `1.0`.
    pub gamma_init: f64,
}

impl Default for InstanceNormConfig {
    fn default() -> Self {
        Self {
            epsilon: 1e-5,
            affine: false,
            track_running_stats: false,
            momentum: Momentum::default(),
            running_variance: RunningVariance::Unbiased,
            gamma_init: 1.0,
        }
    }
}

impl InstanceNormConfig {
    pub fn with_epsilon(self, epsilon: f64) -> Self {
        Self { epsilon, ..self }
    }

    pub fn with_affine(self, affine: bool) -> Self {
        Self { affine, ..self }
    }

    pub fn with_track_running_stats(self, track_running_stats: bool) -> Self {
        Self {
            track_running_stats,
            ..self
        }
    }

    pub fn with_momentum(self, momentum: Momentum) -> Self {
        Self { momentum, ..self }
    }

    pub(crate) fn validate(&self) -> Result<(), NormError> {
        check_epsilon(self.epsilon)?;
        check_gamma_init(self.gamma_init)?;
        self.momentum.validate()
    }

    /// Builds the layer for `num_features` channels, in training mode.
    pub fn init(&self, num_features: usize, device: &Device) -> Result<InstanceNorm, NormError> {
        check_features(num_features)?;
        self.validate()?;
        Ok(InstanceNorm {
            affine: self
                .affine
                .then(|| Affine::new(num_features, self.gamma_init, device)),
            running: self.track_running_stats.then(|| {
                RunningStats::new(
                    1,
                    num_features,
                    self.momentum,
                    self.running_variance,
                    device,
                )
            }),
            training: Param::from_bool(true),
            num_features,
            epsilon: self.epsilon,
        })
    }
}

/// Instance normalization (Ulyanov et al., 2016): each channel of each sample is normalized over
/// its spatial positions (or, for sequences, its real time steps).
///
/// Matches PyTorch's `InstanceNorm1d/2d/3d`. Dense `[N, F]` input has a single position per
/// channel, so there is nothing to normalize over: it is an error, as in PyTorch. With
/// `track_running_stats`, training folds the batch average of the per-instance statistics into
/// running ones and eval uses those (PyTorch's behaviour); by default eval uses the instance's
/// own statistics, like training.
#[derive(Module, Debug)]
pub struct InstanceNorm {
    pub affine: Option<Affine>,
    pub running: Option<RunningStats>,
    pub training: Param<Flag>,
    pub num_features: usize,
    pub epsilon: f64,
}

impl NormLayer for InstanceNorm {
    fn describe(&self) -> String {
        format!("InstanceNorm({} features)", self.num_features)
    }

    fn num_features(&self) -> usize {
        self.num_features
    }

    /// `x: [N, C, S] -> [N, C, S]`, statistics per (sample, channel) over `S`.
    fn normalize(&self, x: Tensor<3>, weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError> {
        let [n, c, s] = x.dims();
        if s < 2 {
            return Err(NormError::SingleValueStatistics {
                layer: self.describe(),
                shape: vec![n, c, s],
                over: "per channel of each sample (no spatial or time axis)",
            });
        }
        let training = is_training(&x, self.training.is_enabled());
        match &self.running {
            Some(running) if !training => {
                let (mean, var) = running.read(0, 1, &x.device());
                let x_hat = batch_norm(
                    x,
                    Tensor::ones([c], &mean.device()),
                    Tensor::zeros([c], &mean.device()),
                    mean,
                    var,
                    self.epsilon,
                );
                Ok(apply_affine(&self.affine, x_hat))
            }
            running => {
                let (x_hat, stats) = normalize_groups(x, weights, c, self.epsilon);
                if let (Some(running), true) = (running, training) {
                    let var = running.variance_estimate(stats.var, stats.count);
                    running.update(
                        0,
                        stats.mean.mean_dim(0).reshape([1, c]),
                        var.mean_dim(0).reshape([1, c]),
                        None,
                    );
                }
                Ok(apply_affine(&self.affine, x_hat))
            }
        }
    }
}
