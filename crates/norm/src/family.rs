//! The private side of every norm layer: the computation hooks a family implements, behind the
//! public [`NormLayer`](crate::NormLayer) trait.
//!
//! The traits here are public in a private module, so users can name neither: they can call every
//! [`NormLayer`](crate::NormLayer) method but implement none, and a family's computation can change
//! (a fused kernel, a new statistic) without touching the public API.

use burn::prelude::*;

use crate::layers::CommonParts;
use crate::{Affine, NormError, RunningStats};

/// What a family computes, on a canonical channels-first view.
///
/// Shape checks, layouts and padding masks are handled once by [`NormLayer`](crate::NormLayer);
/// the hooks see validated input and must never let padding enter a statistic. Their output at
/// padding is zeroed by the caller.
pub trait Family {
    /// A short description naming the layer and its size, used in error messages.
    fn describe(&self) -> String;

    /// The feature count, epsilon and affine of the layer; `None` for a layer without them (no
    /// norm, frozen batch norm), which then says its [`num_features`](Family::num_features).
    fn parts(&self) -> Option<&CommonParts> {
        None
    }

    /// The same, mutable.
    fn parts_mut(&mut self) -> Option<&mut CommonParts> {
        None
    }

    /// The number of features (channels) the layer was built for.
    fn num_features(&self) -> usize {
        self.parts().map_or(0, |p| p.num_features)
    }

    /// The layer's `gamma` and `beta` slot: `None` for a family without one (no norm); the slot
    /// holds `None` for a layer built without affine.
    fn affine_slot(&mut self) -> Option<&mut Option<Affine>> {
        self.parts_mut().map(|p| &mut p.affine)
    }

    /// The layer's `gamma` and `beta`, when it has them.
    fn affine(&self) -> Option<&Affine> {
        self.parts()?.affine.as_ref()
    }

    /// The layer's running statistics, when it keeps them.
    fn running_stats(&self) -> Option<&RunningStats> {
        None
    }

    /// The running statistics the layer folds its batch statistics into, mutable: what
    /// PreciseBN re-estimates. `None` for a layer without them, or one that computes its running
    /// statistics otherwise (online normalization).
    fn batch_running_stats_mut(&mut self) -> Option<&mut RunningStats> {
        None
    }

    /// True when the layer is its own activation (FRN with its TLU, EvoNorm).
    fn includes_activation(&self) -> bool {
        false
    }

    /// True when the output of every path given `weights` is already zero where a weight is
    /// zero, so that the masked forward need not zero it again (a pass each way saved). False
    /// by default: the caller zeroes the padding.
    fn zeroes_padding(&self) -> bool {
        false
    }

    /// Normalizes a channels-first `x: [N, C, S]`. `weights: [N, 1 or C, S]` is 1 for real
    /// elements and 0 for padding.
    fn normalize(&self, x: Tensor<3>, weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError>;

    /// Normalizes a sequence `x: [N, T, F]` with `weights: [N, T, 1]`.
    ///
    /// The default treats time like a spatial axis, which is right for batch norm with shared
    /// statistics, instance and group norm; families with per-step statistics override it.
    fn normalize_sequence(
        &self,
        x: Tensor<3>,
        weights: Option<Tensor<3>>,
    ) -> Result<Tensor<3>, NormError> {
        normalize_time_as_space(self, x, weights)
    }

    /// Normalizes time step `step` of a recurrence, `x: [N, F]`, `weights: [N, 1]`.
    ///
    /// The default sees the step as a sequence of length one; per-step batch norm overrides it to
    /// pick the statistics of `step`.
    fn normalize_step(
        &self,
        x: Tensor<2>,
        step: usize,
        weights: Option<Tensor<2>>,
    ) -> Result<Tensor<2>, NormError> {
        let _ = step;
        with_unit_axis(1, x, weights, |x, w| self.normalize_sequence(x, w))
    }
}

/// Gives access to the family that computes a layer: the layer itself for every family, the
/// chosen one for [`Norm`](crate::Norm). The seal of [`NormLayer`](crate::NormLayer).
pub trait AsFamily {
    /// The family that computes this layer.
    fn family(&self) -> &dyn Family;

    /// The same, mutable.
    fn family_mut(&mut self) -> &mut dyn Family;
}

impl<F: Family> AsFamily for F {
    fn family(&self) -> &dyn Family {
        self
    }

    fn family_mut(&mut self) -> &mut dyn Family {
        self
    }
}

/// True when a layer should use batch statistics and update running ones: the input can be
/// differentiated and the layer's training flag is on (burn-nn's rule).
pub(crate) fn is_training<const D: usize>(x: &Tensor<D>, flag: bool) -> bool {
    flag && x.device().is_autodiff()
}

/// Runs `normalize` on a step `x: [N, F]` (and its weights) seen with a unit axis inserted at
/// `axis`: as a sequence of one step (`axis` 1) or as channels with one position (`axis` 2).
pub(crate) fn with_unit_axis(
    axis: usize,
    x: Tensor<2>,
    weights: Option<Tensor<2>>,
    normalize: impl FnOnce(Tensor<3>, Option<Tensor<3>>) -> Result<Tensor<3>, NormError>,
) -> Result<Tensor<2>, NormError> {
    let out = normalize(
        x.unsqueeze_dim(axis),
        weights.map(|w| w.unsqueeze_dim(axis)),
    )?;
    Ok(out.squeeze_dim(axis))
}

/// `normalize_sequence` that treats time like a spatial axis: `x: [N, T, F]` is seen as
/// `[N, F, T]`.
pub(crate) fn normalize_time_as_space<F: Family + ?Sized>(
    family: &F,
    x: Tensor<3>,
    weights: Option<Tensor<3>>,
) -> Result<Tensor<3>, NormError> {
    let weights = weights.map(|w| w.swap_dims(1, 2));
    Ok(family
        .normalize(x.swap_dims(1, 2), weights)?
        .swap_dims(1, 2))
}

/// `normalize_sequence` for families whose statistics belong to one (sample, step): each step of
/// `x: [N, T, F]` is seen as a sample with `F` channels. Padding needs no care here, since no
/// statistic crosses steps and the caller zeroes padded outputs.
pub(crate) fn normalize_each_step<F: Family + ?Sized>(
    family: &F,
    x: Tensor<3>,
) -> Result<Tensor<3>, NormError> {
    let [n, t, f] = x.dims();
    let out = family.normalize(x.reshape([n * t, f, 1]), None)?;
    Ok(out.reshape([n, t, f]))
}
