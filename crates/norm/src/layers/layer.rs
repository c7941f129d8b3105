//! Layer normalization (Ba et al. 2016).

use std::fmt::Debug;
use std::marker::PhantomData;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::NormError;
use crate::family::{Family, normalize_each_step};
use crate::layers::{CommonParts, common_parts};
use crate::options::{CheckOptions, builder, check_common};

/// Configuration of [`LayerNorm`]: per-sample statistics, centred.
pub type LayerNormConfig = SampleNormConfig<Centered>;

/// Configuration of a norm with one statistic per sample: [`LayerNormConfig`] or
/// [`RmsNormConfig`](crate::RmsNormConfig), which differ in whether the mean is subtracted and
/// in the default `epsilon` (`K`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SampleNormConfig<K: Centering> {
    /// Added to the variance (RMS norm: the mean square) before the square root. Default `1e-5`
    /// for layer norm; `f32::EPSILON` (about `1.19e-7`) for RMS norm, which is what PyTorch's
    /// `RMSNorm(eps=None)` uses for f32.
    pub epsilon: f64,
    /// Learn a per-feature `gamma` and `beta` (RMS norm: PyTorch's `RMSNorm` has no `beta`).
    /// Default `true`.
    pub affine: bool,
    /// Initial value of `gamma`. Default `1.0` (the LN-LSTM and recurrent-BN papers use `0.1`
    /// inside a recurrence).
    pub gamma_init: f64,
    #[serde(skip)]
    centering: PhantomData<K>,
}

/// Whether a per-sample norm subtracts the mean: what tells layer norm ([`Centered`]) and RMS
/// norm ([`Uncentered`]) apart.
pub trait Centering: Clone + Debug + PartialEq + Send + Sync + 'static {
    /// Subtract the mean before dividing.
    const CENTERED: bool;
    /// The default `epsilon`.
    const EPSILON: f64;
}

/// Layer norm: subtract the mean, divide by the standard deviation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Centered;

impl Centering for Centered {
    const CENTERED: bool = true;
    const EPSILON: f64 = 1e-5;
}

/// RMS norm: divide by the root mean square.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uncentered;

impl Centering for Uncentered {
    const CENTERED: bool = false;
    const EPSILON: f64 = f32::EPSILON as f64;
}

impl<K: Centering> Default for SampleNormConfig<K> {
    fn default() -> Self {
        Self {
            epsilon: K::EPSILON,
            affine: true,
            gamma_init: 1.0,
            centering: PhantomData,
        }
    }
}

builder!(impl<K: Centering> SampleNormConfig<K> {
    with_epsilon => epsilon: f64,
    with_affine => affine: bool,
    with_gamma_init => gamma_init: f64,
});

impl<K: Centering> CheckOptions for SampleNormConfig<K> {
    fn check_options(&self, _num_features: usize) -> Result<(), NormError> {
        check_common(self.epsilon, self.gamma_init, None)
    }
}

impl<K: Centering> SampleNormConfig<K> {
    /// Builds the layer for `num_features` features.
    pub fn init(&self, num_features: usize, device: &Device) -> Result<LayerNorm, NormError> {
        self.check(num_features)?;
        Ok(LayerNorm {
            parts: common_parts!(self, num_features, device),
            centered: K::CENTERED,
        })
    }
}

/// Layer normalization (Ba, Kiros & Hinton, 2016): each sample is normalized over all of its
/// features.
///
/// - Dense `[N, F]`: over `F`, as PyTorch's `LayerNorm(F)`.
/// - Conv `[N, C, H, W]` (any spatial rank): over `C, H, W` together, as PyTorch's
///   `LayerNorm([C, H, W])` and `GroupNorm(1, C)`. **Deliberate difference:** `gamma` and `beta`
///   are per channel (`[C]`, as in `GroupNorm(1, C)`), not per element (`[C, H, W]`), so the layer
///   does not tie the model to one image size.
/// - Sequences `[N, T, F]`: over `F` at each step separately, as in the LN-LSTM.
///
/// [`RmsNorm`](crate::RmsNorm) is this layer without centring.
#[derive(Module, Debug)]
pub struct LayerNorm {
    parts: CommonParts,
    /// False for RMS norm: divide by the root mean square, subtract nothing.
    centered: bool,
}

impl Family for LayerNorm {
    fn describe(&self) -> String {
        let name = if self.centered {
            "LayerNorm"
        } else {
            "RmsNorm"
        };
        format!("{name}({} features)", self.parts.num_features)
    }

    family_fields!(parts);

    /// `x: [N, C, S] -> [N, C, S]`, statistics per sample over `C` and `S`.
    fn normalize(&self, x: Tensor<3>, weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError> {
        Ok(self.parts.group_norm(x, weights, 1, self.centered).0)
    }

    fn normalize_sequence(
        &self,
        x: Tensor<3>,
        _weights: Option<Tensor<3>>,
    ) -> Result<Tensor<3>, NormError> {
        normalize_each_step(self, x)
    }
}
