//! Instance normalization (Ulyanov et al. 2016).

use burn::module::{Flag, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::affine::apply_affine;
use crate::family::{Family, is_training};
use crate::kernel::normalize_with;
use crate::layers::{CommonParts, parts_and_running};
use crate::options::{CheckOptions, builder, check_common};
use crate::running::Spread;
use crate::{Momentum, NormError, RunningStats, RunningVariance};

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

builder!(InstanceNormConfig {
    with_epsilon => epsilon: f64,
    with_affine => affine: bool,
    with_track_running_stats => track_running_stats: bool,
    with_momentum => momentum: Momentum,
    with_running_variance => running_variance: RunningVariance,
    with_gamma_init => gamma_init: f64,
});

impl CheckOptions for InstanceNormConfig {
    fn check_options(&self, _num_features: usize) -> Result<(), NormError> {
        check_common(self.epsilon, self.gamma_init, Some(self.momentum))
    }
}

impl InstanceNormConfig {
    /// Builds the layer for `num_features` channels, in training mode.
    pub fn init(&self, num_features: usize, device: &Device) -> Result<InstanceNorm, NormError> {
        self.check(num_features)?;
        let (parts, running) = parts_and_running!(self, 1, num_features, device);
        Ok(InstanceNorm {
            parts,
            running,
            training: Param::from_bool(true),
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
    parts: CommonParts,
    running: Option<RunningStats>,
    training: Param<Flag>,
}

impl Family for InstanceNorm {
    fn describe(&self) -> String {
        format!("InstanceNorm({} features)", self.parts.num_features)
    }

    family_fields!(parts, optional running);

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
        let CommonParts {
            affine,
            epsilon,
            kernels,
            ..
        } = &self.parts;
        match &self.running {
            Some(running) if !training => {
                let device = x.device();
                let (mean, var) = running.read(0, 1, &device);
                let (ones, zeros) = (Tensor::ones([c], &device), Tensor::zeros([c], &device));
                let x_hat = normalize_with(x, mean, var, ones, zeros, *epsilon, *kernels);
                Ok(apply_affine(affine.as_ref(), x_hat))
            }
            running => {
                let (out, stats) = self.parts.group_norm(x, weights, c, true);
                if let (Some(running), true) = (running, training) {
                    let var = running.variance_estimate(stats.var, stats.count);
                    running.update(
                        0,
                        stats.mean.mean_dim(0).reshape([1, c]),
                        Spread::Variance(var.mean_dim(0).reshape([1, c])),
                        None,
                    );
                }
                Ok(out)
            }
        }
    }
}
