//! `NormLayer`: the methods every norm layer offers.

use burn::prelude::*;

use crate::family::AsFamily;
use crate::{Affine, Kernels, NormError, RunningStats};

/// What every norm layer offers: one trait, so that generic code can hold any of them.
///
/// [`Norm`](crate::Norm) has the same methods inherently, so the common case needs no import of
/// this trait. The trait is sealed: every family of this crate implements it, nothing else can.
///
/// # Layouts
/// - [`forward`](NormLayer::forward): channels-first `[N, C]`, `[N, C, L]`, `[N, C, H, W]`,
///   `[N, C, D, H, W]` (any rank >= 2), with `C` = `num_features`.
/// - [`forward_sequence`](NormLayer::forward_sequence): batch-first sequences `[N, T, F]` with an
///   optional padding mask `[N, T]` (true = a real step).
/// - [`forward_step`](NormLayer::forward_step): one time step `[N, F]` inside a recurrence.
///
/// # Empty input
/// Input with an axis of length 0 comes back as it is, and no running statistic changes, as
/// PyTorch's norm layers do.
///
/// # Train and eval
/// A layer with running statistics (batch norm; instance norm with `track_running_stats`) uses
/// batch statistics and updates its running ones only when the input lives on an autodiff device
/// **and** the layer is in training mode, the same rule as burn-nn. `model.valid()` gives the
/// eval copy (plain device, running statistics); `model.train()` switches back.
pub trait NormLayer: AsFamily {
    /// A short description naming the layer and its size, used in error messages.
    fn describe(&self) -> String {
        self.family().describe()
    }

    /// The number of features (channels) the layer was built for.
    fn num_features(&self) -> usize {
        self.family().num_features()
    }

    /// The learned `gamma` and `beta`; `None` for a layer without them.
    fn affine(&self) -> Option<&Affine> {
        self.family().affine()
    }

    /// Replaces the layer's `gamma` and `beta` (e.g. with trained or frozen ones), or removes
    /// them with `None`. An error if the family has no affine (no norm) or the feature count
    /// differs.
    fn set_affine(&mut self, affine: Option<Affine>) -> Result<(), NormError> {
        let layer = self.describe();
        let features = self.num_features();
        if let Some(given) = affine.as_ref().map(Affine::num_features)
            && given != features
        {
            return Err(NormError::ShapeMismatch {
                layer,
                expected: format!("gamma and beta of shape [{features}]"),
                got: vec![given],
            });
        }
        let slot = self
            .family_mut()
            .affine_slot()
            .ok_or_else(|| NormError::InvalidConfig {
                field: "affine",
                value: "Some".into(),
                expected: format!("none: {layer} has no gamma or beta"),
            })?;
        *slot = affine;
        Ok(())
    }

    /// True when the layer brings its own nonlinearity (FRN's TLU, EvoNorm): a model puts no
    /// activation after it.
    fn includes_activation(&self) -> bool {
        self.family().includes_activation()
    }

    /// The running statistics; `None` for a layer that keeps none.
    fn running_stats(&self) -> Option<&RunningStats> {
        self.family().running_stats()
    }

    /// Which computation the layer runs: [`Kernels::Fastest`] unless set.
    fn kernels(&self) -> Kernels {
        self.family()
            .parts()
            .map_or_else(Kernels::default, |p| p.kernels)
    }

    /// Makes the layer run `kernels`: burn's composed tensor ops, or normlab's fused kernels
    /// where the backend has them (the default). A layer without a computation (no norm)
    /// ignores it.
    fn set_kernels(&mut self, kernels: Kernels) {
        if let Some(parts) = self.family_mut().parts_mut() {
            parts.kernels = kernels;
        }
    }

    /// PreciseBN (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm"): from now on, each
    /// training-mode forward folds its batch statistics into an equal-weight average over the
    /// batches that follow this call, instead of the moving average (an exponential average
    /// dominated by the last few batches of a moving model). Run the training batches through
    /// the layer, weights fixed, then evaluate it: its running statistics are the population
    /// estimate.
    ///
    /// Call it on a copy (`model.valid().train()`): clones share running statistics, whose
    /// batch counts restart here, and the momentum stays cumulative for later training. Ghost
    /// batch norm counts every virtual batch as a batch; per-step statistics average each step
    /// over the batches that reached it; batch renormalization averages its moving standard
    /// deviation, EvoNorm-B0 its variance. A layer without batch statistics is unchanged.
    ///
    /// This is the "momentum = 1/k" estimator of the BN paper and of the first PreciseBN
    /// implementations; recent fvcore pools the samples into one population variance instead,
    /// which differs by the spread of the per-batch means.
    fn start_precise_statistics(&mut self) {
        if let Some(running) = self.family_mut().batch_running_stats_mut() {
            running.restart_as_average();
        }
    }

    /// Normalizes channels-first input `[N, C, ...]`; the output has the input's shape.
    fn forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>, NormError>
    where
        Self: Sized,
    {
        let family = self.family();
        let dims = x.dims();
        if D < 2 || dims[1] != family.num_features() {
            return Err(shape_mismatch(self, "[N, {}, ...]", &dims));
        }
        if dims.contains(&0) {
            return Ok(x);
        }
        let spatial: usize = dims[2..].iter().product();
        let out = family.normalize(x.reshape([dims[0], dims[1], spatial]), None)?;
        Ok(out.reshape(dims))
    }

    /// Normalizes a batch-first sequence `x: [N, T, F]`; `mask: [N, T]` marks the real steps.
    ///
    /// Padded steps enter no statistic and come out as zeros.
    fn forward_sequence(
        &self,
        x: Tensor<3>,
        mask: Option<Tensor<2, Bool>>,
    ) -> Result<Tensor<3>, NormError> {
        masked(self, x, mask, "[N, T, {}]", |x, weights| {
            self.family().normalize_sequence(x, weights)
        })
    }

    /// Normalizes time step `step` of a recurrence, `x: [N, F]`; `mask: [N]` marks the
    /// sequences still running at that step. Finished sequences enter no statistic and come out
    /// as zeros.
    fn forward_step(
        &self,
        x: Tensor<2>,
        step: usize,
        mask: Option<Tensor<1, Bool>>,
    ) -> Result<Tensor<2>, NormError> {
        masked(self, x, mask, "[N, {}]", |x, weights| {
            self.family().normalize_step(x, step, weights)
        })
    }
}

impl<L: AsFamily + ?Sized> NormLayer for L {}

/// The error for input of shape `got` where `pattern` (with `{}` for the feature count) was
/// expected.
fn shape_mismatch<L: NormLayer + ?Sized>(layer: &L, pattern: &str, got: &[usize]) -> NormError {
    NormError::ShapeMismatch {
        layer: layer.describe(),
        expected: pattern.replace("{}", &layer.num_features().to_string()),
        got: got.to_vec(),
    }
}

/// Runs `hook` on `x`, whose last axis holds the features, with the mask `[N, ...]` (one flag
/// per position of `x` but the features) turned into 0/1 weights; checks both shapes first and
/// zeroes the output where the mask is false, unless the family's paths do it themselves
/// ([`Family::zeroes_padding`](crate::family::Family::zeroes_padding)).
fn masked<L, const D: usize, const M: usize>(
    layer: &L,
    x: Tensor<D>,
    mask: Option<Tensor<M, Bool>>,
    pattern: &str,
    hook: impl FnOnce(Tensor<D>, Option<Tensor<D>>) -> Result<Tensor<D>, NormError>,
) -> Result<Tensor<D>, NormError>
where
    L: NormLayer + ?Sized,
{
    let dims = x.dims();
    if dims[D - 1] != layer.num_features() {
        return Err(shape_mismatch(layer, pattern, &dims));
    }
    if let Some(mask) = &mask
        && mask.dims()[..] != dims[..M]
    {
        return Err(NormError::MaskMismatch {
            layer: layer.describe(),
            input: dims.to_vec(),
            mask: mask.dims().to_vec(),
        });
    }
    if dims.contains(&0) {
        return Ok(x);
    }
    let Some(mask) = mask else {
        return hook(x, None);
    };
    let weights = mask.float().unsqueeze_dim::<D>(M);
    let out = hook(x, Some(weights.clone()))?;
    Ok(match layer.family().zeroes_padding() {
        true => out,
        false => out * weights,
    })
}
