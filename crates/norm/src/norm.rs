//! `Norm`: any norm layer, as a `NormConfig` chose it.

use burn::prelude::*;

use crate::family::{AsFamily, Family};
use crate::{
    BatchNorm, BatchRenorm, EvoNormB0, EvoNormS0, FilterResponseNorm, FrozenBatchNorm, GroupNorm,
    InstanceNorm, Kernels, LayerNorm, NoNorm, NormError, NormLayer, OnlineNorm, RmsNorm,
};

/// Any norm layer, as chosen by a [`NormConfig`](crate::NormConfig) (or, for
/// [`FrozenBatch`](Norm::FrozenBatch), made by [`Norm::frozen`]).
///
/// It has the [`NormLayer`] methods a model calls (`forward`, `forward_sequence`,
/// `forward_step`, `describe`, `num_features`, `includes_activation`) as its own, so using it
/// needs no trait import.
#[derive(Module, Debug)]
pub enum Norm {
    /// No normalization.
    None(NoNorm),
    /// Batch norm (and ghost batch norm).
    Batch(BatchNorm),
    /// Layer norm.
    Layer(LayerNorm),
    /// Instance norm.
    Instance(InstanceNorm),
    /// Group norm.
    Group(GroupNorm),
    /// RMS norm.
    Rms(RmsNorm),
    /// Batch renormalization.
    BatchRenorm(BatchRenorm),
    /// Filter response normalization with its TLU.
    Frn(FilterResponseNorm),
    /// EvoNorm-S0.
    EvoNormS0(EvoNormS0),
    /// EvoNorm-B0.
    EvoNormB0(EvoNormB0),
    /// Online normalization.
    Online(OnlineNorm),
    /// A batch norm frozen into a fixed affine map.
    FrozenBatch(FrozenBatchNorm),
}

/// The chosen layer of a [`Norm`], whatever its family, as `$layer` in `$body`.
macro_rules! chosen {
    ($norm:expr, $layer:ident => $body:expr) => {
        match $norm {
            Norm::None($layer) => $body,
            Norm::Batch($layer) => $body,
            Norm::Layer($layer) | Norm::Rms($layer) => $body,
            Norm::Instance($layer) => $body,
            Norm::Group($layer) => $body,
            Norm::BatchRenorm($layer) => $body,
            Norm::Frn($layer) => $body,
            Norm::EvoNormS0($layer) => $body,
            Norm::EvoNormB0($layer) => $body,
            Norm::Online($layer) => $body,
            Norm::FrozenBatch($layer) => $body,
        }
    };
}

impl AsFamily for Norm {
    fn family(&self) -> &dyn Family {
        chosen!(self, layer => layer)
    }

    fn family_mut(&mut self) -> &mut dyn Family {
        chosen!(self, layer => layer)
    }
}

impl Norm {
    /// See [`NormLayer::describe`].
    pub fn describe(&self) -> String {
        NormLayer::describe(self)
    }

    /// See [`NormLayer::num_features`].
    pub fn num_features(&self) -> usize {
        NormLayer::num_features(self)
    }

    /// See [`NormLayer::includes_activation`]: FRN and EvoNorm are their own activation.
    pub fn includes_activation(&self) -> bool {
        NormLayer::includes_activation(self)
    }

    /// See [`NormLayer::forward`]: channels-first `[N, C, ...]` in, the same shape out.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>, NormError> {
        NormLayer::forward(self, x)
    }

    /// See [`NormLayer::forward_sequence`]: `[N, T, F]` with a padding mask `[N, T]`.
    pub fn forward_sequence(
        &self,
        x: Tensor<3>,
        mask: Option<Tensor<2, Bool>>,
    ) -> Result<Tensor<3>, NormError> {
        NormLayer::forward_sequence(self, x, mask)
    }

    /// See [`NormLayer::forward_step`]: step `step` of a recurrence, `[N, F]`, mask `[N]`.
    pub fn forward_step(
        &self,
        x: Tensor<2>,
        step: usize,
        mask: Option<Tensor<1, Bool>>,
    ) -> Result<Tensor<2>, NormError> {
        NormLayer::forward_step(self, x, step, mask)
    }

    /// The same layer running `kernels` (see [`NormLayer::set_kernels`]).
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        NormLayer::set_kernels(&mut self, kernels);
        self
    }

    /// The same layer re-estimating its population statistics as an equal-weight average (see
    /// [`NormLayer::start_precise_statistics`]).
    pub fn for_precise_statistics(mut self) -> Self {
        NormLayer::start_precise_statistics(&mut self);
        self
    }

    /// The same layer with batch statistics frozen: batch norm and batch renormalization become
    /// the fixed affine map they apply in eval ([`FrozenBatchNorm`]); every other family is
    /// returned as it is. An error for a batch norm without running statistics.
    pub fn frozen(self) -> Result<Self, NormError> {
        Ok(match self {
            Self::Batch(l) => Self::FrozenBatch(l.frozen()?),
            Self::BatchRenorm(l) => Self::FrozenBatch(l.frozen()),
            other => other,
        })
    }

    /// The per-channel `(scale, shift)`, each `[features]`, that the layer applies in eval when
    /// that is a fixed affine map (batch norm, batch renormalization, frozen batch norm; the
    /// identity for no norm): what [`fold_into_linear`](crate::fold_into_linear) writes into
    /// the preceding layer. An error for any other family, or for per-step statistics.
    pub fn eval_map(&self, device: &Device) -> Result<(Tensor<1>, Tensor<1>), NormError> {
        let frozen = match self {
            Self::Batch(l) if l.per_step().is_some() => {
                return Err(NormError::NoFixedMap {
                    layer: self.describe(),
                    reason: "its statistics differ from time step to time step",
                });
            }
            Self::Batch(l) => l.frozen()?,
            Self::BatchRenorm(l) => l.frozen(),
            Self::FrozenBatch(l) => return Ok(l.scale_and_shift()),
            Self::None(l) => {
                let c = NormLayer::num_features(l);
                return Ok((Tensor::ones([c], device), Tensor::zeros([c], device)));
            }
            _ => {
                return Err(NormError::NoFixedMap {
                    layer: self.describe(),
                    reason: "its output depends on the sample's own statistics",
                });
            }
        };
        let (scale, shift) = frozen.scale_and_shift();
        Ok((scale.to_device(device), shift.to_device(device)))
    }
}
