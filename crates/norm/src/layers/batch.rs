//! Batch normalization (Ioffe & Szegedy 2015), with ghost batches and per-step statistics.

use burn::module::{Flag, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::family::{Family, is_training, normalize_time_as_space, with_unit_axis};
use crate::kernel::{
    batch_norm_train_unmasked, ghost_chunks, masked_batch_norm_train, moments, normalize_with,
};
use crate::layers::{CommonParts, parts_and_running};
use crate::options::{CheckOptions, builder, check_common, invalid};
use crate::running::Spread;
use crate::{FrozenBatchNorm, Momentum, NormError, RunningStats, RunningVariance};

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
    /// `Some(g)`: ghost batch norm (Hoffer, Hubara & Soudry 2017). In training, the batch is
    /// cut into consecutive virtual batches of `g` samples, each normalized with its own
    /// statistics, and the running statistics fold in each virtual batch in turn (the authors'
    /// code). The last virtual batch holds the remainder, and joins the one before if it would
    /// hold a single value per feature. Eval is unchanged. This varies the number of samples
    /// behind each statistic without changing the optimizer's batch. Default `None`: the whole
    /// batch.
    pub ghost_batch: Option<usize>,
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
            ghost_batch: None,
        }
    }
}

builder!(BatchNormConfig {
    with_epsilon => epsilon: f64,
    with_momentum => momentum: Momentum,
    with_affine => affine: bool,
    with_track_running_stats => track_running_stats: bool,
    with_running_variance => running_variance: RunningVariance,
    with_per_step => per_step: Option<usize>,
    with_gamma_init => gamma_init: f64,
    with_ghost_batch => ghost_batch: Option<usize>,
});

impl CheckOptions for BatchNormConfig {
    fn check_options(&self, _num_features: usize) -> Result<(), NormError> {
        check_common(self.epsilon, self.gamma_init, Some(self.momentum))?;
        if self.per_step == Some(0) {
            let expected = "at least 1 time step (leave it out for shared statistics)";
            return Err(invalid("per_step", 0, expected));
        }
        if self.ghost_batch == Some(0) {
            let expected = "at least 1 sample (leave it out for the whole batch)";
            return Err(invalid("ghost_batch", 0, expected));
        }
        Ok(())
    }
}

impl BatchNormConfig {
    /// Builds the layer for `num_features` features, in training mode.
    pub fn init(&self, num_features: usize, device: &Device) -> Result<BatchNorm, NormError> {
        self.check(num_features)?;
        let slots = self.per_step.unwrap_or(1);
        let (parts, running) = parts_and_running!(self, slots, num_features, device);
        Ok(BatchNorm {
            parts,
            running,
            training: Param::from_bool(true),
            per_step: self.per_step,
            ghost_batch: self.ghost_batch,
        })
    }
}

/// Batch normalization (Ioffe & Szegedy, 2015): each feature is normalized over the batch (and
/// all spatial positions or time steps).
///
/// # Train and eval
/// In training (input on an autodiff device and the layer's training flag on; see
/// [`NormLayer`](crate::NormLayer)) it normalizes with the batch's mean and biased variance and folds them into the
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
    parts: CommonParts,
    /// `None` when `track_running_stats` is off.
    running: Option<RunningStats>,
    training: Param<Flag>,
    per_step: Option<usize>,
    ghost_batch: Option<usize>,
}

impl Family for BatchNorm {
    fn describe(&self) -> String {
        match self.per_step {
            Some(t) => format!(
                "BatchNorm({} features, per step up to {t})",
                self.parts.num_features
            ),
            None => format!("BatchNorm({} features)", self.parts.num_features),
        }
    }

    family_fields!(parts, optional running);

    /// Every weighted path zeroes the padding: the fused kernel writes zeros there, and the
    /// composed and eval paths multiply by the weights.
    fn zeroes_padding(&self) -> bool {
        true
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
        let [n, t, f] = x.dims();
        match (self.per_step, self.ghost_batch) {
            // Statistics shared over time pool every real step of every sequence: the steps are
            // the rows of a dense batch, which the fused kernels read as they lie in memory.
            (None, None) => {
                let weights = weights.map(|w| w.reshape([n * t, 1, 1]));
                let out = self.normalize_slots(x.reshape([n * t, f, 1]), weights, 0)?;
                return Ok(out.reshape([n, t, f]));
            }
            // Virtual batches count sequences, so time stays an axis of its own.
            (None, Some(_)) => return normalize_time_as_space(self, x, weights),
            (Some(_), _) => {}
        }
        // Step t, feature f becomes channel t * F + f of a dense batch: statistics over N only.
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
        with_unit_axis(2, x, weights, |x, w| self.normalize_slots(x, w, first_slot))
    }
}

impl BatchNorm {
    /// `Some(t)` when the layer keeps statistics for each of `t` time steps.
    pub fn per_step(&self) -> Option<usize> {
        self.per_step
    }

    /// The fixed affine map this layer applies in eval; an error without running statistics.
    pub fn frozen(&self) -> Result<FrozenBatchNorm, NormError> {
        let Some(running) = &self.running else {
            return Err(NormError::NoFixedMap {
                layer: self.describe(),
                reason: "it keeps no running statistics (track_running_stats = false)",
            });
        };
        let device = running.mean().device();
        let (gamma, beta) = self.affine_over(1, &device);
        Ok(FrozenBatchNorm::new(
            running,
            self.parts.epsilon,
            gamma,
            beta,
            self.per_step.is_some(),
        ))
    }

    /// Normalizes `x: [N, K * F, S]`, whose channels are `K` consecutive statistics slots of `F`
    /// features starting at `first_slot` (`K = 1` for shared statistics).
    fn normalize_slots(
        &self,
        x: Tensor<3>,
        weights: Option<Tensor<3>>,
        first_slot: usize,
    ) -> Result<Tensor<3>, NormError> {
        let slots = x.dims()[1] / self.parts.num_features;
        let device = x.device();
        let training = is_training(&x, self.training.is_enabled());
        let (gamma, beta) = self.affine_over(slots, &device);

        let Some(running) = &self.running else {
            let affine = SlotAffine {
                gamma,
                beta,
                first_slot,
            };
            return self.normalize_with_batch(x, weights, affine, None);
        };
        if training {
            if first_slot + slots > running.slots() {
                return Err(NormError::StepOutOfRange {
                    layer: self.describe(),
                    step: first_slot + slots - 1,
                    max_steps: running.slots(),
                });
            }
            let affine = SlotAffine {
                gamma,
                beta,
                first_slot,
            };
            return self.normalize_with_batch(x, weights, affine, Some(running));
        }
        let (mean, var) = running.read(first_slot, slots, &device);
        let out = normalize_with(
            x,
            mean,
            var,
            gamma,
            beta,
            self.parts.epsilon,
            self.parts.kernels,
        );
        Ok(match weights {
            Some(weights) => out * weights,
            None => out,
        })
    }

    /// `gamma` and `beta` repeated for `slots` slots; ones and zeros without affine.
    fn affine_over(&self, slots: usize, device: &Device) -> (Tensor<1>, Tensor<1>) {
        match &self.parts.affine {
            Some(a) => (
                a.gamma().repeat_dim(0, slots),
                a.beta().repeat_dim(0, slots),
            ),
            None => {
                let c = slots * self.parts.num_features;
                (Tensor::ones([c], device), Tensor::zeros([c], device))
            }
        }
    }

    /// Normalizes with the batch's own statistics (each virtual batch's, for ghost batch norm),
    /// folding them into `running` when given, one virtual batch after another.
    fn normalize_with_batch(
        &self,
        x: Tensor<3>,
        weights: Option<Tensor<3>>,
        affine: SlotAffine,
        running: Option<&RunningStats>,
    ) -> Result<Tensor<3>, NormError> {
        let [n, c, s] = x.dims();
        let chunks = ghost_chunks(n, s, self.ghost_batch);
        if let Some(&size) = chunks.iter().find(|&&size| size * s < 2) {
            return Err(NormError::SingleValueStatistics {
                layer: self.describe(),
                shape: [size, c, s].to_vec(),
                over: "per feature in the batch",
            });
        }
        let Some(weights) = weights else {
            return Ok(self.normalize_unweighted(x, &chunks, affine, running));
        };
        if chunks.len() == 1 {
            // Slicing out the whole batch would cost a copy each way, and zeros to pad the
            // slice's gradient with.
            return Ok(self.normalize_weighted(x, weights, affine, running));
        }
        let mut outputs = Vec::with_capacity(chunks.len());
        let mut start = 0;
        for size in chunks {
            let rows = start..start + size;
            let chunk = x.clone().slice(s![rows.clone(), .., ..]);
            let chunk_weights = weights.clone().slice(s![rows, .., ..]);
            outputs.push(self.normalize_weighted(chunk, chunk_weights, affine.clone(), running));
            start += size;
        }
        Ok(Tensor::cat(outputs, 0))
    }

    /// Normalizes every virtual batch of `chunks` samples in one kernel, then folds each one's
    /// statistics into `running` in turn.
    fn normalize_unweighted(
        &self,
        x: Tensor<3>,
        chunks: &[usize],
        affine: SlotAffine,
        running: Option<&RunningStats>,
    ) -> Tensor<3> {
        let [_, c, s] = x.dims();
        let (ghost, epsilon, kernels) = (self.ghost_batch, self.parts.epsilon, self.parts.kernels);
        let out = batch_norm_train_unmasked(x, affine.gamma, affine.beta, ghost, epsilon, kernels);
        if let Some(running) = running {
            for (i, size) in chunks.iter().enumerate() {
                let batch = |stat: &Tensor<1>| match chunks.len() {
                    1 => stat.clone(),
                    _ => stat.clone().slice(s![i * c..(i + 1) * c]),
                };
                let stats = [batch(&out.mean), batch(&out.variance)];
                running.fold_batch(affine.first_slot, stats, size * s, self.parts.kernels);
            }
        }
        out.output
    }

    /// Normalizes one (virtual) batch of padded sequences with the statistics of its valid
    /// steps (`weights` 1, padding 0).
    fn normalize_weighted(
        &self,
        x: Tensor<3>,
        weights: Tensor<3>,
        affine: SlotAffine,
        running: Option<&RunningStats>,
    ) -> Tensor<3> {
        let SlotAffine {
            gamma,
            beta,
            first_slot,
        } = affine;
        let epsilon = self.parts.epsilon;
        let pair = [gamma.clone(), beta.clone()];
        if let Some((out, count)) =
            masked_batch_norm_train(x.clone(), &weights, pair, epsilon, self.parts.kernels)
        {
            if let Some(running) = running {
                running.fold_batch(
                    first_slot,
                    [out.mean, out.variance],
                    count,
                    self.parts.kernels,
                );
            }
            return out.output;
        }
        let [n, c, s] = x.dims();
        let slots = c / self.parts.num_features;
        let stats = moments(x.clone(), Some(weights.clone()), &[0, 2]);
        let counts: Vec<f32> = stats.count.clone().into_data().iter::<f32>().collect();
        let batch_hat = stats.centered.clone() / (stats.var.clone() + self.parts.epsilon).sqrt();
        let shape = [1, c, 1];
        let x_hat = match (counts.iter().all(|&k| k >= 2.0), running) {
            (false, Some(running)) => {
                // Steps with a single running sequence fall back to their running statistics.
                let (mean, var) = running.read(first_slot, slots, &x.device());
                let running_hat =
                    (x - mean.reshape(shape)) / (var.reshape(shape) + self.parts.epsilon).sqrt();
                let valid = stats.count.clone().greater_equal_elem(2.0);
                running_hat.mask_where(valid.expand([n, c, s]), batch_hat)
            }
            _ => batch_hat,
        };
        if let Some(running) = running {
            let per_slot = [slots, self.parts.num_features];
            let var = running.variance_estimate(stats.var, stats.count.clone());
            let valid = stats
                .count
                .reshape(per_slot)
                .slice(s![.., 0..1])
                .greater_equal_elem(2.0);
            running.update(
                first_slot,
                stats.mean.reshape(per_slot),
                Spread::Variance(var.reshape(per_slot)),
                Some(valid),
            );
        }
        (x_hat * gamma.reshape(shape) + beta.reshape(shape)) * weights
    }
}

/// The `gamma` and `beta` of the statistics slots a batch is normalized over, from `first_slot`
/// (repeated per slot; ones and zeros without affine).
#[derive(Clone)]
struct SlotAffine {
    gamma: Tensor<1>,
    beta: Tensor<1>,
    first_slot: usize,
}
