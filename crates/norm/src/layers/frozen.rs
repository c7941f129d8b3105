//! A trained batch norm frozen into the fixed per-channel map it applies in eval.

use burn::module::Param;
use burn::prelude::*;

use crate::family::{Family, with_unit_axis};
use crate::{NormError, RunningStats};

/// Batch norm with its statistics frozen: the fixed per-channel affine map
/// `y = x * scale + shift` that the trained layer applies in eval, with
/// `scale = gamma / sqrt(running_var + eps)` and `shift = beta - running_mean * scale`.
///
/// Nothing in it depends on the batch, in training or in eval, and nothing trains: the usual way
/// to fine-tune a pretrained network at a batch size too small for batch statistics. Made by
/// [`Norm::frozen`](crate::Norm::frozen) (or [`BatchNorm::frozen`](crate::BatchNorm::frozen)).
/// Per-step statistics stay per step; steps beyond the last trained one use its map.
#[derive(Module, Debug)]
pub struct FrozenBatchNorm {
    /// `[slots, features]`.
    scale: Param<Tensor<2>>,
    /// `[slots, features]`.
    shift: Param<Tensor<2>>,
    num_features: usize,
    per_step: bool,
}

impl FrozenBatchNorm {
    /// The map of a layer with `running` statistics (all their slots), `epsilon` and the given
    /// `gamma` and `beta`, each `[features]`.
    pub(crate) fn new(
        running: &RunningStats,
        epsilon: f64,
        gamma: Tensor<1>,
        beta: Tensor<1>,
        per_step: bool,
    ) -> Self {
        let [slots, features] = running.mean().dims();
        let device = gamma.device();
        let (mean, var) = running.read(0, slots, &device);
        let (mean, var) = (
            mean.reshape([slots, features]),
            var.reshape([slots, features]),
        );
        let scale = gamma.unsqueeze_dim::<2>(0) / (var + epsilon).sqrt();
        let shift = beta.unsqueeze_dim::<2>(0) - mean * scale.clone();
        let frozen = |t: Tensor<2>| Param::from_tensor(t.detach()).set_require_grad(false);
        Self {
            scale: frozen(scale),
            shift: frozen(shift),
            num_features: features,
            per_step,
        }
    }

    /// The scale and shift of slot 0 (the only one unless per step), each `[features]`: what
    /// folding writes into the preceding layer.
    pub fn scale_and_shift(&self) -> (Tensor<1>, Tensor<1>) {
        let first = |t: &Param<Tensor<2>>| t.val().slice(s![0..1, ..]).reshape([-1]);
        (first(&self.scale), first(&self.shift))
    }

    /// Applies slots `first..first + k` to `x: [N, k * F, S]`, the last slot standing in for any
    /// beyond it.
    fn apply(&self, x: Tensor<3>, first: usize) -> Tensor<3> {
        let [_, c, _] = x.dims();
        let k = c / self.num_features;
        let slots = self.scale.dims()[0];
        let index: Vec<i64> = (first..first + k)
            .map(|slot| slot.min(slots - 1) as i64)
            .collect();
        let device = x.device();
        let index = Tensor::<1, Int>::from_data(index.as_slice(), &device);
        let pick = |t: &Param<Tensor<2>>| {
            t.val()
                .to_device(&device)
                .select(0, index.clone())
                .reshape([1, c, 1])
        };
        x * pick(&self.scale) + pick(&self.shift)
    }
}

impl Family for FrozenBatchNorm {
    fn describe(&self) -> String {
        format!("FrozenBatchNorm({} features)", self.num_features)
    }

    fn num_features(&self) -> usize {
        self.num_features
    }

    /// `x: [N, C, S] -> [N, C, S]`, the map of slot 0.
    fn normalize(&self, x: Tensor<3>, _weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError> {
        Ok(self.apply(x, 0))
    }

    fn normalize_sequence(
        &self,
        x: Tensor<3>,
        weights: Option<Tensor<3>>,
    ) -> Result<Tensor<3>, NormError> {
        if !self.per_step {
            return crate::family::normalize_time_as_space(self, x, weights);
        }
        // Step t, feature f becomes channel t * F + f, as in per-step batch norm.
        let [n, t, f] = x.dims();
        Ok(self.apply(x.reshape([n, t * f, 1]), 0).reshape([n, t, f]))
    }

    fn normalize_step(
        &self,
        x: Tensor<2>,
        step: usize,
        weights: Option<Tensor<2>>,
    ) -> Result<Tensor<2>, NormError> {
        let first = if self.per_step { step } else { 0 };
        with_unit_axis(2, x, weights, |x, _| Ok(self.apply(x, first)))
    }
}
