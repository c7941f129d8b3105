//! Running statistics: the moving averages batch norm keeps for eval, per time step if asked.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use burn::backend::DispatchDevice;
use burn::module::RunningState;
use burn::prelude::*;
use burn::tensor::{DType, TensorData};

use crate::{Kernels, Momentum, RunningVariance};

/// Running mean and variance, in one or more *slots* of `[features]` each.
///
/// Batch norm with statistics shared over time, and instance norm, use one slot; per-step batch
/// norm uses one slot per time step. Each slot also counts the batches folded into it, which
/// gives the cumulative average (`momentum = "cumulative"`) and tells eval which steps were ever
/// trained.
#[derive(Module, Debug)]
pub struct RunningStats {
    /// `[slots, features]`, starts at 0.
    mean: RunningState<Tensor<2>>,
    /// `[slots, features]`, starts at 1.
    var: RunningState<Tensor<2>>,
    /// `[slots]`: batches folded into each slot so far (PyTorch's `num_batches_tracked`).
    batches: RunningState<Tensor<1>>,
    /// `None`: cumulative average.
    momentum: Option<f64>,
    unbiased: bool,
    /// Host folds waiting for the end of a [`fold_statistics_after`] (shared by clones, as
    /// the states are).
    #[module(skip)]
    deferred: Deferred,
}

/// One batch's statistics, read to the host, for slots `first..`: per slot `features` means and
/// biased variances, each over `count` values.
#[derive(Debug, Clone)]
struct HostFold {
    first: usize,
    mean: Vec<f32>,
    biased_var: Vec<f32>,
    count: usize,
    autodiff: bool,
}

/// The host folds a [`RunningStats`] has waiting, in the order they came.
#[derive(Debug, Clone, Default)]
struct Deferred(Arc<Mutex<Vec<HostFold>>>);

impl Deferred {
    fn take(&self) -> Vec<HostFold> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

thread_local! {
    /// Inside [`fold_statistics_after`] on this thread: the statistics with folds waiting.
    static DEFERRING: RefCell<Option<Vec<RunningStats>>> = const { RefCell::new(None) };
}

/// Runs `body` with the host folds of batch norm's running statistics (flex, `f32`, the fastest
/// kernels) kept until it returns, then made, each statistics' in one pass over its slots: the
/// same operations in the same order as folding each batch at once, so the same bits (tested).
///
/// A recurrence's batch norms fold at every time step; per-step statistics keep a slot per step,
/// and folding one step rewrites all of them, which at small batches costs more than the layer's
/// own kernels.
/// Reading the statistics inside `body` makes the waiting folds first; nested calls wait for the
/// outermost.
pub fn fold_statistics_after<R>(body: impl FnOnce() -> R) -> R {
    let nested = DEFERRING.with(|d| {
        let mut d = d.borrow_mut();
        let nested = d.is_some();
        d.get_or_insert_with(Vec::new);
        nested
    });
    if nested {
        return body();
    }
    /// Makes the folds when `body` returns or unwinds.
    struct Fold;
    impl Drop for Fold {
        fn drop(&mut self) {
            for stats in DEFERRING
                .with(|d| d.borrow_mut().take())
                .unwrap_or_default()
            {
                stats.make_deferred_folds();
            }
        }
    }
    let _fold = Fold;
    body()
}

impl RunningStats {
    /// The running means, `[slots, features]` (one slot unless batch norm keeps statistics per
    /// time step).
    pub fn mean(&self) -> Tensor<2> {
        self.make_deferred_folds();
        self.mean.value_sync()
    }

    /// The running variances, `[slots, features]`.
    pub fn var(&self) -> Tensor<2> {
        self.make_deferred_folds();
        self.var.value_sync()
    }

    /// How many batches each slot has folded in, `[slots]`.
    pub fn batches(&self) -> Tensor<1> {
        self.make_deferred_folds();
        self.batches.value_sync()
    }

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
            deferred: Deferred::default(),
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
        self.make_deferred_folds();
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
    /// (broadcastable to `biased_var`). Off the autodiff graph, as the running statistics are.
    pub(crate) fn variance_estimate<const D: usize>(
        &self,
        biased_var: Tensor<D>,
        count: Tensor<D>,
    ) -> Tensor<D> {
        let (biased_var, count) = (biased_var.without_autodiff(), count.without_autodiff());
        match self.unbiased {
            // Callers use the estimate only where count >= 2; the clamp keeps the rest finite.
            true => biased_var * count.clone() / (count - 1.0).clamp_min(1.0),
            false => biased_var,
        }
    }

    /// Folds one batch's per-channel mean and biased variance (`[k * features]`, each taken
    /// over `count` values) into slots `first..first + k`, the variance as its
    /// [`variance_estimate`](Self::variance_estimate). With the fastest kernels on flex it runs
    /// on the host, with the bits of the tensor ops (tested): at small batches their dozen ops
    /// per layer and step cost more than the layer's own kernels. Inside
    /// [`fold_statistics_after`] the host fold waits for its end.
    pub(crate) fn fold_batch(
        &self,
        first: usize,
        [mean, biased_var]: [Tensor<1>; 2],
        count: usize,
        kernels: Kernels,
    ) {
        if kernels == Kernels::Fastest && self.on_host_with(&mean) {
            let host = |t: Tensor<1>| {
                t.into_data()
                    .try_into_vec::<f32>()
                    .expect("checked to be f32")
            };
            let fold = HostFold {
                first,
                autodiff: mean.is_autodiff(),
                mean: host(mean),
                biased_var: host(biased_var),
                count,
            };
            return self.defer_or_make(fold);
        }
        self.make_deferred_folds();
        let features = self.mean.value_sync().dims()[1];
        let per_slot = [mean.dims()[0] / features, features];
        let count = Tensor::<1>::full([1], count as f64, &mean.device());
        let var = self.variance_estimate(biased_var, count);
        self.update(
            first,
            mean.reshape(per_slot),
            Spread::Variance(var.reshape(per_slot)),
            None,
        );
    }

    /// Whether the statistics and `batch` live on flex in `f32` (what the experiments train
    /// in), where the host path runs.
    fn on_host_with(&self, batch: &Tensor<1>) -> bool {
        let state = self.mean.value_sync();
        let on_flex =
            |device: Device| matches!(device.inner().as_dispatch(), DispatchDevice::Flex(_));
        on_flex(state.device())
            && on_flex(batch.device())
            && state.dtype() == DType::F32
            && batch.dtype() == DType::F32
    }

    /// Keeps `fold` for the end of the enclosing [`fold_statistics_after`], or makes it now
    /// outside one.
    fn defer_or_make(&self, fold: HostFold) {
        let fold = DEFERRING.with(|d| match d.borrow_mut().as_mut() {
            Some(waiting) => {
                let mut folds = self.deferred.0.lock().unwrap_or_else(|e| e.into_inner());
                if folds.is_empty() {
                    waiting.push(self.clone());
                }
                folds.push(fold);
                None
            }
            None => Some(fold),
        });
        if let Some(fold) = fold {
            self.fold_on_host(&[fold]);
        }
    }

    /// Makes the folds waiting for a [`fold_statistics_after`], if any.
    fn make_deferred_folds(&self) {
        let folds = self.deferred.take();
        if !folds.is_empty() {
            self.fold_on_host(&folds);
        }
    }

    /// [`fold_batch`](Self::fold_batch) of each of `folds` in turn, on the host: the same
    /// operations on the same values in the same order as
    /// [`variance_estimate`](Self::variance_estimate) and [`update`](Self::update), each rounded
    /// to `f32` as flex rounds them, the states read and written once.
    fn fold_on_host(&self, folds: &[HostFold]) {
        let old_mean = self.mean.value_sync();
        let (device, [slots, features]) = (old_mean.device(), old_mean.dims());
        let host = |data: TensorData| data.try_into_vec::<f32>().expect("checked to be f32");
        let mut all_mean = host(old_mean.into_data());
        let mut all_var = host(self.var.value_sync().into_data());
        let mut batches = host(self.batches.value_sync().into_data());
        for fold in folds {
            let count = fold.count as f64 as f32;
            let batch = fold
                .mean
                .chunks(features)
                .zip(fold.biased_var.chunks(features));
            for (slot, (mean, var)) in (fold.first..).zip(batch) {
                let factor = match self.momentum {
                    Some(m) => m as f32,
                    None => 1.0 / (batches[slot] + 1.0),
                };
                let at = slot * features..(slot + 1) * features;
                for (old, &new) in all_mean[at.clone()].iter_mut().zip(mean) {
                    *old = *old + (new - *old) * factor;
                }
                for (old, &var) in all_var[at].iter_mut().zip(var) {
                    let new = match self.unbiased {
                        true => var * count / (count - 1.0).max(1.0),
                        false => var,
                    };
                    *old = *old + (new - *old) * factor;
                }
                batches[slot] += 1.0;
            }
        }
        let state = (&device, folds.iter().any(|fold| fold.autodiff));
        self.mean
            .update(state_tensor(all_mean, [slots, features], state));
        self.var
            .update(state_tensor(all_var, [slots, features], state));
        self.batches.update(state_tensor(batches, [slots], state));
        self.settle();
    }

    /// Folds batch statistics into slots `first..first + k`.
    ///
    /// `mean` is `[k, features]`, and so is the second statistic (see [`Spread`]); `valid:
    /// [k, 1]` (optional) leaves the slots it marks false untouched.
    pub(crate) fn update(
        &self,
        first: usize,
        mean: Tensor<2>,
        spread: Spread,
        valid: Option<Tensor<2, Bool>>,
    ) {
        self.make_deferred_folds();
        let [k, features] = mean.dims();
        let autodiff = mean.is_autodiff();
        let device = mean.device();
        // The bookkeeping runs off the autodiff graph: it is never differentiated, and each of
        // its small ops would otherwise pay autodiff's dispatch (half a dense batch norm's time).
        let plain = |state: &RunningState<Tensor<2>>| {
            state.value_sync().to_device(&device).without_autodiff()
        };
        let slots = first..first + k;
        let whole = first == 0 && k == self.slots();
        // The slots this batch folds into, and all slots with those replaced.
        let region = |all: Tensor<2>| match whole {
            true => all,
            false => all.slice(slots.clone()),
        };
        let replace = |all: Tensor<2>, new: Tensor<2>| match whole {
            true => new,
            false => all.slice_assign(slots.clone(), new),
        };
        let batches = self
            .batches
            .value_sync()
            .to_device(&device)
            .without_autodiff();
        let seen = batches.clone().slice(slots.clone()).reshape([k, 1]);
        let factor = match self.momentum {
            Some(m) => Tensor::full([k, 1], m, &batches.device()),
            None => (seen.clone() + 1.0).recip(),
        };
        let keep = valid.map(|v| v.without_autodiff());
        let store = |state: &RunningState<Tensor<2>>, all: Tensor<2>, old: Tensor<2>, new| {
            let new = match &keep {
                Some(keep) => old.mask_where(keep.clone().expand([k, features]), new),
                None => new,
            };
            let all = replace(all, new);
            state.update(if autodiff { all.autodiff() } else { all });
        };
        let fold = |old: Tensor<2>, batch: Tensor<2>| {
            old.clone() + (batch.without_autodiff() - old) * factor.clone()
        };
        let all_mean = plain(&self.mean);
        let old_mean = region(all_mean.clone());
        store(&self.mean, all_mean, old_mean.clone(), fold(old_mean, mean));
        let all_var = plain(&self.var);
        let old_var = region(all_var.clone());
        let new_var = match spread {
            Spread::Variance(var) => fold(old_var.clone(), var),
            Spread::StdDev { std, epsilon } => {
                let old_std = (old_var.clone() + epsilon).sqrt();
                (fold(old_std, std).square() - epsilon).clamp_min(0.0)
            }
        };
        store(&self.var, all_var, old_var, new_var);
        let counted = match &keep {
            Some(keep) => seen.clone().mask_where(keep.clone(), seen + 1.0),
            None => seen + 1.0,
        };
        let batches = batches.slice_assign(slots, counted.reshape([k]));
        self.batches.update(if autodiff {
            batches.autodiff()
        } else {
            batches
        });
        self.settle();
    }

    /// Makes this thread's updates the statistics' value now. burn folds a thread's update in
    /// only at the next read of that thread (or `valid()`), and saving reads without folding: a
    /// model saved right after a training step would hold statistics one step stale. (burn
    /// averages updates from several threads for data-parallel training, which this crate does
    /// not do.)
    fn settle(&self) {
        for state in [&self.mean, &self.var] {
            state.value_sync();
        }
        self.batches.value_sync();
    }
}

impl RunningStats {
    /// Makes every later fold an equal-weight average over the batches folded after this call:
    /// the batch counts restart at zero and the momentum becomes cumulative (PreciseBN).
    pub(crate) fn restart_as_average(&mut self) {
        self.make_deferred_folds();
        self.momentum = None;
        let batches = self.batches.value_sync();
        self.batches.update(batches.zeros_like());
        self.batches.value_sync();
    }

    /// Replaces slot 0's statistics by `mean` and `var`, each `[1, features]`: for a layer
    /// that computes its running statistics itself (Online Normalization).
    pub(crate) fn set(&self, mean: Tensor<2>, var: Tensor<2>) {
        self.make_deferred_folds();
        for (state, value) in [(&self.mean, mean), (&self.var, var)] {
            let all = state.value_sync().to_device(&value.device());
            state.update(all.slice_assign(s![0..1, ..], value).detach());
            state.value_sync();
        }
    }
}

/// A statistic of `shape` holding `values` on `device`, with autodiff when asked (as the
/// statistics it replaces).
fn state_tensor<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    (device, autodiff): (&Device, bool),
) -> Tensor<D> {
    let plain =
        Tensor::from_data(TensorData::new(values, shape), (device, DType::F32)).without_autodiff();
    match autodiff {
        true => plain.autodiff(),
        false => plain,
    }
}

/// The second statistic a batch folds into the running variance.
pub(crate) enum Spread {
    /// A variance (from [`RunningStats::variance_estimate`]), averaged as it is.
    Variance(Tensor<2>),
    /// A standard deviation `sqrt(var + epsilon)`, averaged as a standard deviation (batch
    /// renormalization); the running variance stays `std^2 - epsilon`, so that eval reads
    /// `sqrt(var + epsilon)` as for batch norm.
    StdDev {
        /// `[k, features]`.
        std: Tensor<2>,
        /// The layer's epsilon.
        epsilon: f64,
    },
}

#[cfg(test)]
mod tests {
    use normlab_testkit::values;

    use super::*;

    fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    /// The host path of the fastest kernels and the tensor ops of the composed ones fold the
    /// same batches into the same statistics to the bit: both momenta, both variances, the
    /// whole statistics or a few slots, with and without autodiff.
    #[test]
    fn the_host_fold_has_the_bits_of_the_tensor_ops() {
        let momenta = [Momentum::Exponential(0.1), Momentum::Cumulative];
        let variances = [RunningVariance::Unbiased, RunningVariance::Biased];
        for device in [Device::flex(), Device::flex().autodiff()] {
            for (momentum, variance) in momenta.into_iter().flat_map(|m| variances.map(|v| (m, v)))
            {
                for (first, k) in [(0, 3), (0, 1), (1, 1), (2, 1), (1, 2)] {
                    let kernels = [Kernels::Fastest, Kernels::Composed];
                    let stats =
                        kernels.map(|_| RunningStats::new(3, 5, momentum, variance, &device));
                    for step in 0..4 {
                        let mean = values([k * 5], step, &device);
                        let var = values([k * 5], step + 10, &device).abs();
                        for (stats, kernels) in stats.iter().zip(kernels) {
                            let batch = [mean.clone(), var.clone()];
                            stats.fold_batch(first, batch, 2 + step as usize, kernels);
                        }
                    }
                    let case = format!("{momentum:?} {variance:?} slots {first}..{}", first + k);
                    let [host, ops] = &stats;
                    assert!(host.on_host_with(&values([5], 0, &device)), "{case}");
                    assert_eq!(
                        host.mean().is_autodiff(),
                        ops.mean().is_autodiff(),
                        "{case}"
                    );
                    assert_eq!(floats(host.mean()), floats(ops.mean()), "{case}");
                    assert_eq!(floats(host.var()), floats(ops.var()), "{case}");
                    assert_eq!(floats(host.batches()), floats(ops.batches()), "{case}");
                    assert_ne!(floats(host.mean()), vec![0.0; 15], "{case}");
                }
            }
        }
    }
}
