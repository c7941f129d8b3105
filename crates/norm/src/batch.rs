use burn::module::{Flag, Param};
use burn::prelude::*;
use burn::tensor::module::{BatchNormTrainOutput, batch_norm, batch_norm_train};
use serde::{Deserialize, Serialize};

use crate::affine::Affine;
use crate::config::{Momentum, RunningVariance, check_epsilon, check_features, check_gamma_init};
use crate::norm_layer::is_training;
use crate::running::RunningStats;
use crate::stats::moments;
use crate::{NormError, NormLayer};

/// Configuration of [`BatchNorm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root. Default `1e-5`.
    pub epsilon: f64,
    /// How running statistics fold in each batch. Default `0.1` (PyTorch's convention).
    pub momentum: Momentum,
    /// Learn a per-feature `gamma` and `beta`. Default `true`.
    pub affine: bool,
    /// Keep running statistics for eval. Default `true`; when `false`, eval normalizes with the
    /// statistics of the eval batch, as training does.
    pub track_running_stats: bool,
    /// Which batch variance the running variance averages. Default unbiased.
    pub running_variance: RunningVariance,
    /// `Some(t)`: separate statistics for each of the first `t` time steps of a sequence
    /// (recurrent batch norm, Cooijmans et al. 2016); `gamma` and `beta` stay shared. Default
    /// `None`: one set of statistics shared over time.
    pub per_step: Option<usize>,
    /// Initial value of `gamma`. Default `1.0`; recurrent batch norm recommends `0.1`.
    pub gamma_init: f64,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self {
            epsilon: 1e-5,
            momentum: Momentum::default(),
            affine: true,
            track_running_stats: true,
            running_variance: RunningVariance::Unbiased,
            per_step: None,
            gamma_init: 1.0,
        }
    }
}

impl BatchNormConfig {
    pub fn with_epsilon(self, epsilon: f64) -> Self {
        Self { epsilon, ..self }
    }

    pub fn with_momentum(self, momentum: Momentum) -> Self {
        Self { momentum, ..self }
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

    pub fn with_running_variance(self, running_variance: RunningVariance) -> Self {
        Self {
            running_variance,
            ..self
        }
    }

    pub fn with_per_step(self, per_step: Option<usize>) -> Self {
        Self { per_step, ..self }
    }

    pub fn with_gamma_init(self, gamma_init: f64) -> Self {
        Self { gamma_init, ..self }
    }

    pub(crate) fn validate(&self) -> Result<(), NormError> {
        check_epsilon(self.epsilon)?;
        check_gamma_init(self.gamma_init)?;
        self.momentum.validate()?;
        if self.per_step == Some(0) {
            return Err(NormError::InvalidConfig {
                field: "per_step",
                value: "0".into(),
                expected: "at least 1 time step (leave it out for shared statistics)".into(),
            });
        }
        Ok(())
    }

    /// Builds the layer for `num_features` features, in training mode.
    pub fn init(&self, num_features: usize, device: &Device) -> Result<BatchNorm, NormError> {
        check_features(num_features)?;
        self.validate()?;
        let slots = self.per_step.unwrap_or(1);
        Ok(BatchNorm {
            affine: self
                .affine
                .then(|| Affine::new(num_features, self.gamma_init, device)),
            running: self.track_running_stats.then(|| {
                RunningStats::new(
                    slots,
                    num_features,
                    self.momentum,
                    self.running_variance,
                    device,
                )
            }),
            training: Param::from_bool(true),
            num_features,
            epsilon: self.epsilon,
            per_step: self.per_step,
        })
    }
}

/// Batch normalization (Ioffe & Szegedy, 2015): each feature is normalized over the batch (and
/// all spatial positions or time steps).
///
/// # Train and eval
/// In training (input on an autodiff device and the layer's training flag on; see
/// [`NormLayer`]) it normalizes with the batch's mean and biased variance and folds them into the
/// running statistics: `running = (1 - momentum) * running + momentum * batch`, the variance
/// unbiased by default. In eval (`model.valid()`) it normalizes with the running statistics, so a
/// sample's output does not depend on the rest of its batch; eval at batch size 1 works.
///
/// A training batch with one value per feature (a dense batch of one) has no variance: it is an
/// error, as in PyTorch (burn-nn silently outputs `beta`). A constant feature gives `beta`, never
/// NaN. Statistics are computed so that large-mean, small-variance f32 input stays accurate.
///
/// # Sequences
/// `[N, T, F]` with statistics shared over time pools all real steps of all sequences. With
/// `per_step = Some(t_max)` each step `t < t_max` has its own statistics, taken only over the
/// sequences still running at `t`; in eval, steps beyond the longest trained one reuse its
/// statistics.
///
/// # Padding
/// Where padding leaves fewer than two real values of a feature (a time step at which one
/// sequence is still running), there is no batch variance: those values are normalized with the
/// running statistics, which they leave unchanged (an error there would make variable-length
/// training fail whenever one sequence is the longest). Without running statistics they come out
/// as `beta`. A batch that has one value per feature whatever its padding is an error.
#[derive(Module, Debug)]
pub struct BatchNorm {
    pub affine: Option<Affine>,
    /// `None` when `track_running_stats` is off.
    pub running: Option<RunningStats>,
    pub training: Param<Flag>,
    pub num_features: usize,
    pub epsilon: f64,
    pub per_step: Option<usize>,
}

impl NormLayer for BatchNorm {
    fn describe(&self) -> String {
        match self.per_step {
            Some(t) => format!(
                "BatchNorm({} features, per step up to {t})",
                self.num_features
            ),
            None => format!("BatchNorm({} features)", self.num_features),
        }
    }

    fn num_features(&self) -> usize {
        self.num_features
    }

    /// `x: [N, C, S] -> [N, C, S]`, statistics per channel over `N` and `S`.
    fn normalize(&self, x: Tensor<3>, weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError> {
        if self.per_step.is_some() {
            return Err(NormError::NeedsTimeAxis {
                layer: self.describe(),
            });
        }
        self.normalize_slots(x, weights, 0)
    }

    fn normalize_sequence(
        &self,
        x: Tensor<3>,
        weights: Option<Tensor<3>>,
    ) -> Result<Tensor<3>, NormError> {
        if self.per_step.is_none() {
            let weights = weights.map(|w| w.swap_dims(1, 2));
            return Ok(self.normalize(x.swap_dims(1, 2), weights)?.swap_dims(1, 2));
        }
        // Step t, feature f becomes channel t * F + f of a dense batch: statistics over N only.
        let [n, t, f] = x.dims();
        let weights = weights.map(|w| w.expand([n, t, f]).reshape([n, t * f, 1]));
        let out = self.normalize_slots(x.reshape([n, t * f, 1]), weights, 0)?;
        Ok(out.reshape([n, t, f]))
    }

    fn normalize_step(
        &self,
        x: Tensor<2>,
        step: usize,
        weights: Option<Tensor<2>>,
    ) -> Result<Tensor<2>, NormError> {
        let first_slot = if self.per_step.is_some() { step } else { 0 };
        let out = self.normalize_slots(
            x.unsqueeze_dim(2),
            weights.map(|w| w.unsqueeze_dim(2)),
            first_slot,
        )?;
        Ok(out.squeeze_dim(2))
    }
}

impl BatchNorm {
    /// Normalizes `x: [N, K * F, S]`, whose channels are `K` consecutive statistics slots of `F`
    /// features starting at `first_slot` (`K = 1` for shared statistics).
    fn normalize_slots(
        &self,
        x: Tensor<3>,
        weights: Option<Tensor<3>>,
        first_slot: usize,
    ) -> Result<Tensor<3>, NormError> {
        let slots = x.dims()[1] / self.num_features;
        let device = x.device();
        let training = is_training(&x, self.training.is_enabled());
        let (gamma, beta) = self.affine_over(slots, &device);

        let Some(running) = &self.running else {
            return self.normalize_with_batch(x, weights, gamma, beta, None, first_slot);
        };
        if training {
            if first_slot + slots > running.slots() {
                return Err(NormError::StepOutOfRange {
                    layer: self.describe(),
                    step: first_slot + slots - 1,
                    max_steps: running.slots(),
                });
            }
            return self.normalize_with_batch(x, weights, gamma, beta, Some(running), first_slot);
        }
        let (mean, var) = running.read(first_slot, slots, &device);
        Ok(batch_norm(x, gamma, beta, mean, var, self.epsilon))
    }

    /// `gamma` and `beta` repeated for `slots` slots; ones and zeros without affine.
    fn affine_over(&self, slots: usize, device: &Device) -> (Tensor<1>, Tensor<1>) {
        match &self.affine {
            Some(a) => (
                a.gamma.val().repeat_dim(0, slots),
                a.beta.val().repeat_dim(0, slots),
            ),
            None => {
                let c = slots * self.num_features;
                (Tensor::ones([c], device), Tensor::zeros([c], device))
            }
        }
    }

    /// Normalizes with the batch's own statistics, folding them into `running` when given.
    fn normalize_with_batch(
        &self,
        x: Tensor<3>,
        weights: Option<Tensor<3>>,
        gamma: Tensor<1>,
        beta: Tensor<1>,
        running: Option<&RunningStats>,
        first_slot: usize,
    ) -> Result<Tensor<3>, NormError> {
        let [n, c, s] = x.dims();
        let slots = c / self.num_features;
        if n * s < 2 {
            return Err(NormError::SingleValueStatistics {
                layer: self.describe(),
                shape: [n, c, s].to_vec(),
                over: "per feature in the batch",
            });
        }
        let Some(weights) = weights else {
            // burn's op has a closed-form backward: one graph node instead of a dozen. Its plain
            // two-pass statistics lose digits when the mean dwarfs the spread (mean 1e4, std 1e-2
            // in f32), so it sees the input shifted by one of its own values per channel: the
            // output and its gradient are unchanged, the data it averages is now centred.
            let shift = x.clone().slice(s![0..1, .., 0..1]).detach();
            let out = batch_norm_train(x - shift.clone(), gamma, beta, self.epsilon);
            let out = BatchNormTrainOutput {
                mean: out.mean + shift.reshape([c]),
                ..out
            };
            if let Some(running) = running {
                let count = Tensor::<1>::full([1], (n * s) as f64, &out.output.device());
                let var = running.variance_estimate(out.variance, count);
                running.update(
                    first_slot,
                    out.mean.reshape([slots, self.num_features]),
                    var.reshape([slots, self.num_features]),
                    None,
                );
            }
            return Ok(out.output);
        };

        let stats = moments(x.clone(), Some(weights), &[0, 2]);
        let counts: Vec<f32> = stats.count.clone().into_data().iter::<f32>().collect();
        let batch_hat = stats.centered.clone() / (stats.var.clone() + self.epsilon).sqrt();
        let shape = [1, c, 1];
        let x_hat = match (counts.iter().all(|&k| k >= 2.0), running) {
            (false, Some(running)) => {
                // Steps with a single running sequence fall back to their running statistics.
                let (mean, var) = running.read(first_slot, slots, &x.device());
                let running_hat =
                    (x - mean.reshape(shape)) / (var.reshape(shape) + self.epsilon).sqrt();
                let valid = stats.count.clone().greater_equal_elem(2.0);
                running_hat.mask_where(valid.expand([n, c, s]), batch_hat)
            }
            _ => batch_hat,
        };
        if let Some(running) = running {
            let per_slot = [slots, self.num_features];
            let var = running.variance_estimate(stats.var, stats.count.clone());
            let valid = stats
                .count
                .reshape(per_slot)
                .slice(s![.., 0..1])
                .greater_equal_elem(2.0);
            running.update(
                first_slot,
                stats.mean.reshape(per_slot),
                var.reshape(per_slot),
                Some(valid),
            );
        }
        Ok(x_hat * gamma.reshape(shape) + beta.reshape(shape))
    }
}
