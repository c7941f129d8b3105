use burn::module::RunningState;
use burn::prelude::*;

use crate::config::{Momentum, RunningVariance};

/// Running mean and variance, in one or more *slots* of `[features]` each.
///
/// Batch norm with statistics shared over time, and instance norm, use one slot; per-step batch
/// norm uses one slot per time step. Each slot also counts the batches folded into it, which
/// gives the cumulative average (`momentum = "cumulative"`) and tells eval which steps were ever
/// trained.
#[derive(Module, Debug)]
pub struct RunningStats {
    /// `[slots, features]`, starts at 0.
    pub mean: RunningState<Tensor<2>>,
    /// `[slots, features]`, starts at 1.
    pub var: RunningState<Tensor<2>>,
    /// `[slots]`: batches folded into each slot so far (PyTorch's `num_batches_tracked`).
    pub batches: RunningState<Tensor<1>>,
    /// `None`: cumulative average.
    pub momentum: Option<f64>,
    pub unbiased: bool,
}

impl RunningStats {
    pub(crate) fn new(
        slots: usize,
        num_features: usize,
        momentum: Momentum,
        variance: RunningVariance,
        device: &Device,
    ) -> Self {
        Self {
            mean: RunningState::new(Tensor::zeros([slots, num_features], device)),
            var: RunningState::new(Tensor::ones([slots, num_features], device)),
            batches: RunningState::new(Tensor::zeros([slots], device)),
            momentum: momentum.factor(),
            unbiased: variance == RunningVariance::Unbiased,
        }
    }

    pub(crate) fn slots(&self) -> usize {
        self.batches.value_sync().dims()[0]
    }

    /// Mean and variance of `count` consecutive slots from `first`, flattened to
    /// `[count * features]`, for evaluation. Slots never trained reuse the last trained slot
    /// (recurrent BN: test sequences longer than any training sequence).
    pub(crate) fn read(
        &self,
        first: usize,
        count: usize,
        device: &Device,
    ) -> (Tensor<1>, Tensor<1>) {
        let trained = self
            .batches
            .value_sync()
            .into_data()
            .iter::<f32>()
            .collect::<Vec<_>>()
            .iter()
            .rposition(|&b| b > 0.0)
            .unwrap_or(0);
        let index: Vec<i64> = (first..first + count)
            .map(|slot| slot.min(trained) as i64)
            .collect();
        let index = Tensor::<1, Int>::from_data(index.as_slice(), device);
        let pick = |state: &RunningState<Tensor<2>>| {
            state
                .value_sync()
                .to_device(device)
                .select(0, index.clone())
                .reshape([-1])
        };
        (pick(&self.mean), pick(&self.var))
    }

    /// The batch variance the running variance averages: `biased_var` itself, or times
    /// `count / (count - 1)`, `count` being how many elements each statistic was taken over
    /// (broadcastable to `biased_var`).
    pub(crate) fn variance_estimate<const D: usize>(
        &self,
        biased_var: Tensor<D>,
        count: Tensor<D>,
    ) -> Tensor<D> {
        match self.unbiased {
            // Callers use the estimate only where count >= 2; the clamp keeps the rest finite.
            true => biased_var * count.clone() / (count - 1.0).clamp_min(1.0),
            false => biased_var,
        }
    }

    /// Folds batch statistics into slots `first..first + k`.
    ///
    /// `mean` and `var` (from [`variance_estimate`](Self::variance_estimate)) are
    /// `[k, features]`; `valid: [k, 1]` (optional) leaves the slots it marks false untouched.
    pub(crate) fn update(
        &self,
        first: usize,
        mean: Tensor<2>,
        var: Tensor<2>,
        valid: Option<Tensor<2, Bool>>,
    ) {
        let [k, features] = mean.dims();
        let device = mean.device();
        let slots = first..first + k;
        let batches = self.batches.value_sync().to_device(&device);
        let seen = batches.clone().slice(slots.clone()).reshape([k, 1]);
        let factor = match self.momentum {
            Some(m) => Tensor::full([k, 1], m, &device),
            None => (seen.clone() + 1.0).recip(),
        };
        let keep = valid.unwrap_or_else(|| Tensor::<2, Bool>::ones([k, 1], &device));
        let fold = |state: &RunningState<Tensor<2>>, batch: Tensor<2>| {
            let all = state.value_sync().to_device(&device);
            let old = all.clone().slice(slots.clone());
            let new = old.clone() + (batch.detach() - old.clone()) * factor.clone();
            let new = old.mask_where(keep.clone().expand([k, features]), new);
            state.update(all.slice_assign(slots.clone(), new).detach());
        };
        fold(&self.mean, mean);
        fold(&self.var, var);
        let seen = seen.clone().mask_where(keep, seen + 1.0).reshape([k]);
        self.batches
            .update(batches.slice_assign(slots, seen).detach());
        // burn folds a thread's update in only at the next read of that thread (or `valid()`),
        // and saving reads without folding: a model saved right after a training step would hold
        // statistics one step stale. Fold now. (burn averages updates from several threads for
        // data-parallel training, which this crate does not do.)
        for state in [&self.mean, &self.var] {
            state.value_sync();
        }
        self.batches.value_sync();
    }
}
