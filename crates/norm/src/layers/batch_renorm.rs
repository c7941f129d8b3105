//! Batch renormalization (Ioffe 2017): batch norm corrected towards its moving statistics.

use burn::module::{Flag, Param, RunningState};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::family::{Family, is_training};
use crate::kernel::{
    Renorm, batch_norm_train_unmasked, batch_renorm_train, moments, normalize_with,
};
use crate::layers::{CommonParts, common_parts};
use crate::options::{CheckOptions, builder, check_common, invalid};
use crate::running::Spread;
use crate::{FrozenBatchNorm, Momentum, NormError, RunningStats, RunningVariance};

/// Configuration of [`BatchRenorm`]. The defaults are the paper's (Inception-v3 on ImageNet,
/// about 130k steps); a short run wants a shorter schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchRenormConfig {
    /// Added to the batch variance before the square root: `sigma_B = sqrt(var_B + eps)`.
    /// Default `1e-5`.
    pub epsilon: f64,
    /// How fast the moving mean and moving standard deviation follow the batches, PyTorch's
    /// convention (`moving += momentum * (batch - moving)`). Default `0.01`, the paper's
    /// "relatively fast" rate (Keras' `renorm_momentum = 0.99`).
    pub momentum: Momentum,
    /// Learn a per-feature `gamma` and `beta`. Default `true`.
    pub affine: bool,
    /// Initial value of `gamma`. Default `1.0`.
    pub gamma_init: f64,
    /// Final bound of the correction `r`, which is clipped to `[1 / r_max, r_max]`. Default 3.
    pub r_max: f64,
    /// Final bound of the correction `d`, which is clipped to `[-d_max, d_max]`. Default 5.
    pub d_max: f64,
    /// Training steps of plain batch norm (`r = 1`, `d = 0`) before the bounds relax. Default
    /// 5000.
    pub warmup_steps: usize,
    /// The step at which `r_max` reaches its final value, relaxed linearly from 1 after the
    /// warm-up. Default 40000.
    pub r_max_steps: usize,
    /// The step at which `d_max` reaches its final value, relaxed linearly from 0 after the
    /// warm-up. Default 25000.
    pub d_max_steps: usize,
}

impl Default for BatchRenormConfig {
    fn default() -> Self {
        Self {
            epsilon: 1e-5,
            momentum: Momentum::Exponential(0.01),
            affine: true,
            gamma_init: 1.0,
            r_max: 3.0,
            d_max: 5.0,
            warmup_steps: 5000,
            r_max_steps: 40000,
            d_max_steps: 25000,
        }
    }
}

builder!(BatchRenormConfig {
    with_epsilon => epsilon: f64,
    with_momentum => momentum: Momentum,
    with_affine => affine: bool,
    with_gamma_init => gamma_init: f64,
    with_r_max => r_max: f64,
    with_d_max => d_max: f64,
    with_warmup_steps => warmup_steps: usize,
    with_r_max_steps => r_max_steps: usize,
    with_d_max_steps => d_max_steps: usize,
});

impl CheckOptions for BatchRenormConfig {
    fn check_options(&self, _num_features: usize) -> Result<(), NormError> {
        check_common(self.epsilon, self.gamma_init, Some(self.momentum))?;
        if !(self.r_max >= 1.0 && self.r_max.is_finite()) {
            return Err(invalid("r_max", self.r_max, "a finite number >= 1"));
        }
        if !(self.d_max >= 0.0 && self.d_max.is_finite()) {
            return Err(invalid("d_max", self.d_max, "a finite number >= 0"));
        }
        let after_warmup = format!("at least warmup_steps = {}", self.warmup_steps);
        if self.r_max_steps < self.warmup_steps {
            return Err(invalid("r_max_steps", self.r_max_steps, &after_warmup));
        }
        if self.d_max_steps < self.warmup_steps {
            return Err(invalid("d_max_steps", self.d_max_steps, &after_warmup));
        }
        Ok(())
    }
}

impl BatchRenormConfig {
    /// Builds the layer for `num_features` features, in training mode.
    pub fn init(&self, num_features: usize, device: &Device) -> Result<BatchRenorm, NormError> {
        self.check(num_features)?;
        // The moving variance is kept as sigma^2 - eps, which batch norm's eval reads back as
        // sigma: no Bessel correction applies to a moving standard deviation.
        let running = RunningStats::new(
            1,
            num_features,
            self.momentum,
            RunningVariance::Biased,
            device,
        );
        Ok(BatchRenorm {
            parts: common_parts!(self, num_features, device),
            running,
            steps: RunningState::new(Tensor::zeros([1], device)),
            training: Param::from_bool(true),
            r_max: self.r_max,
            d_max: self.d_max,
            warmup_steps: self.warmup_steps,
            r_max_steps: self.r_max_steps,
            d_max_steps: self.d_max_steps,
        })
    }
}

/// Batch Renormalization (Ioffe 2017): batch norm whose training output is corrected towards
/// what the moving statistics would give, so that training and inference compute nearly the
/// same function, also at small or non-i.i.d. batches.
///
/// In training, per feature, with the batch's mean `mu_B` and `sigma_B = sqrt(var_B + eps)` and
/// the moving `mu` and `sigma`:
/// `r = clip(sigma_B / sigma, 1 / r_max, r_max)`, `d = clip((mu_B - mu) / sigma, -d_max,
/// d_max)`, both treated as constants by the gradient, and
/// `y = gamma * ((x - mu_B) / sigma_B * r + d) + beta`; then `mu += momentum * (mu_B - mu)`,
/// `sigma += momentum * (sigma_B - sigma)`. In eval `y = gamma * (x - mu) / sigma + beta`.
/// `r_max` and `d_max` follow the configured schedule over training steps; with `r_max = 1` and
/// `d_max = 0` it is batch norm. The running variance it reports is `sigma^2 - eps`.
///
/// Layouts as batch norm with statistics shared over time; a batch with one value per feature
/// is an error.
#[derive(Module, Debug)]
pub struct BatchRenorm {
    parts: CommonParts,
    running: RunningStats,
    /// Training steps so far, `[1]`: where the schedule stands.
    steps: RunningState<Tensor<1>>,
    training: Param<Flag>,
    r_max: f64,
    d_max: f64,
    warmup_steps: usize,
    r_max_steps: usize,
    d_max_steps: usize,
}

impl BatchRenorm {
    /// The fixed affine map this layer applies in eval.
    pub fn frozen(&self) -> FrozenBatchNorm {
        let c = self.parts.num_features;
        let (gamma, beta) = self.affine_or_identity(c, &self.running.mean().device());
        FrozenBatchNorm::new(&self.running, self.parts.epsilon, gamma, beta, false)
    }

    /// The bounds `(r_max, d_max)` at training step `step`.
    fn bounds(&self, step: f64) -> (f64, f64) {
        let warmup = self.warmup_steps as f64;
        // 0 until the warm-up ends, 1 from step `end` on, linear between.
        let progress = |end: usize| match step >= end as f64 {
            true => 1.0,
            false => ((step - warmup) / (end as f64 - warmup)).clamp(0.0, 1.0),
        };
        (
            1.0 + (self.r_max - 1.0) * progress(self.r_max_steps),
            self.d_max * progress(self.d_max_steps),
        )
    }

    /// Training in burn tensor ops, on batch norm's kernel where there is one: the output, and
    /// the batch's mean and biased variance, `[C]`. `moving` is the moving mean and standard
    /// deviation; `weights` marks real values with 1, as for batch norm.
    fn composed_train(
        &self,
        x: Tensor<3>,
        weights: Option<Tensor<3>>,
        [gamma, beta]: [Tensor<1>; 2],
        [mean, sigma]: [Tensor<1>; 2],
        Renorm {
            r_max,
            d_max,
            epsilon,
        }: Renorm,
    ) -> (Tensor<3>, Tensor<1>, Tensor<1>) {
        let [_, c, _] = x.dims();
        let device = x.device();
        let (x_hat, batch_mean, batch_var) = match weights {
            None => {
                let out = batch_norm_train_unmasked(
                    x,
                    Tensor::ones([c], &device),
                    Tensor::zeros([c], &device),
                    None,
                    epsilon,
                    self.parts.kernels,
                );
                (out.output, out.mean, out.variance)
            }
            Some(weights) => {
                let stats = moments(x, Some(weights), &[0, 2]);
                let x_hat = stats.centered / (stats.var.clone() + epsilon).sqrt();
                (x_hat, stats.mean.reshape([c]), stats.var.reshape([c]))
            }
        };
        let batch_sigma = (batch_var.clone() + epsilon).sqrt().detach();
        let batch_mean = batch_mean.detach();
        let r = (batch_sigma / sigma.clone()).clamp(1.0 / r_max, r_max);
        let d = ((batch_mean.clone() - mean) / sigma).clamp(-d_max, d_max);
        let shape = [1, c, 1];
        let scale = (gamma.clone() * r).reshape(shape);
        let shift = (gamma * d + beta).reshape(shape);
        (x_hat * scale + shift, batch_mean, batch_var)
    }

    fn affine_or_identity(&self, c: usize, device: &Device) -> (Tensor<1>, Tensor<1>) {
        match &self.parts.affine {
            Some(a) => (a.gamma(), a.beta()),
            None => (Tensor::ones([c], device), Tensor::zeros([c], device)),
        }
    }
}

impl Family for BatchRenorm {
    fn describe(&self) -> String {
        format!("BatchRenorm({} features)", self.parts.num_features)
    }

    family_fields!(parts, running);

    /// `x: [N, C, S] -> [N, C, S]`, statistics per channel over `N` and `S`.
    fn normalize(&self, x: Tensor<3>, weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError> {
        let [n, c, s] = x.dims();
        let device = x.device();
        let epsilon = self.parts.epsilon;
        let (gamma, beta) = self.affine_or_identity(c, &device);
        let (mean, var) = self.running.read(0, 1, &device);
        if !is_training(&x, self.training.is_enabled()) {
            return Ok(normalize_with(
                x,
                mean,
                var,
                gamma,
                beta,
                epsilon,
                self.parts.kernels,
            ));
        }
        if n * s < 2 {
            return Err(NormError::SingleValueStatistics {
                layer: self.describe(),
                shape: vec![n, c, s],
                over: "per feature in the batch",
            });
        }
        let step = self.steps.value_sync().into_scalar::<f64>();
        let (r_max, d_max) = self.bounds(step);
        let renorm = Renorm {
            r_max,
            d_max,
            epsilon,
        };
        let affine = [gamma, beta];
        let moving = [mean, (var + epsilon).sqrt()];
        let kernels = self.parts.kernels;
        let fused = match &weights {
            None => batch_renorm_train(x.clone(), affine.clone(), moving.clone(), renorm, kernels),
            Some(_) => None,
        };
        let (y, batch_mean, batch_var) = match fused {
            Some(out) => out,
            None => self.composed_train(x, weights, affine, moving, renorm),
        };
        let spread = Spread::StdDev {
            std: (batch_var + epsilon).sqrt().detach().reshape([1, c]),
            epsilon,
        };
        self.running
            .update(0, batch_mean.detach().reshape([1, c]), spread, None);
        let steps = self.steps.value_sync();
        self.steps.update((steps + 1.0).detach());
        self.steps.value_sync();
        Ok(y)
    }
}
