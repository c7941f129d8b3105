//! Filter response normalization with its thresholded linear unit (Singh & Krishnan 2020).

use burn::module::Param;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::NormError;
use crate::family::Family;
use crate::kernel::frn;
use crate::layers::{CommonParts, common_parts};
use crate::options::{CheckOptions, builder, check_common};

/// Configuration of [`FilterResponseNorm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrnConfig {
    /// Added to the mean square before the square root. Default `1e-6`, the paper's.
    pub epsilon: f64,
    /// Learn a further `|eps_l|` added to `epsilon` (one per layer, starting at `1e-4`): the
    /// paper's fix for maps of one position (dense layers, 1x1 maps), where `x / sqrt(x^2 + eps)`
    /// is nearly the sign of `x`. Default `false`.
    pub learned_epsilon: bool,
    /// Learn a per-channel `gamma` and `beta`. Default `true`.
    pub affine: bool,
    /// Initial value of `gamma`. Default `1.0`.
    pub gamma_init: f64,
}

impl Default for FrnConfig {
    fn default() -> Self {
        Self {
            epsilon: 1e-6,
            learned_epsilon: false,
            affine: true,
            gamma_init: 1.0,
        }
    }
}

builder!(FrnConfig {
    with_epsilon => epsilon: f64,
    with_learned_epsilon => learned_epsilon: bool,
    with_affine => affine: bool,
    with_gamma_init => gamma_init: f64,
});

impl CheckOptions for FrnConfig {
    fn check_options(&self, _num_features: usize) -> Result<(), NormError> {
        check_common(self.epsilon, self.gamma_init, None)
    }
}

impl FrnConfig {
    /// Builds the layer for `num_features` channels.
    pub fn init(
        &self,
        num_features: usize,
        device: &Device,
    ) -> Result<FilterResponseNorm, NormError> {
        self.check(num_features)?;
        Ok(FilterResponseNorm {
            parts: common_parts!(self, num_features, device),
            tau: Param::from_tensor(Tensor::zeros([num_features], device)),
            learned_epsilon: self
                .learned_epsilon
                .then(|| Param::from_tensor(Tensor::full([1], 1e-4, device))),
        })
    }
}

/// Filter Response Normalization with its Thresholded Linear Unit (Singh & Krishnan 2020): each
/// channel of each sample is divided by its root mean square over the positions, without
/// subtracting a mean and without any batch statistic; then `max(gamma * x_hat + beta, tau)`
/// with a learned per-channel threshold `tau` (starting at 0).
///
/// `nu2 = mean(x^2)` over the positions of one `(n, c)` (the real time steps of a sequence; the
/// single value of a dense feature or of a recurrence step), `x_hat = x / sqrt(nu2 + eps)`. It
/// brings its own activation: a model puts no other one after it
/// ([`Norm::includes_activation`](crate::Norm::includes_activation)). Train and eval compute the
/// same thing, and a sample's output never depends on the rest of its batch.
#[derive(Module, Debug)]
pub struct FilterResponseNorm {
    parts: CommonParts,
    tau: Param<Tensor<1>>,
    learned_epsilon: Option<Param<Tensor<1>>>,
}

impl FilterResponseNorm {
    /// The learned threshold of the TLU, `[features]`.
    pub fn tau(&self) -> Tensor<1> {
        self.tau.val()
    }

    /// The learned part `eps_l` of epsilon (`[1]`), when configured.
    pub fn learned_epsilon(&self) -> Option<Tensor<1>> {
        self.learned_epsilon.as_ref().map(Param::val)
    }
}

impl Family for FilterResponseNorm {
    fn describe(&self) -> String {
        format!("FilterResponseNorm({} features)", self.parts.num_features)
    }

    family_fields!(parts);

    fn includes_activation(&self) -> bool {
        true
    }

    /// `x: [N, C, S] -> [N, C, S]`, statistics per (sample, channel) over `S`.
    fn normalize(&self, x: Tensor<3>, weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError> {
        let CommonParts {
            affine,
            epsilon,
            kernels,
            ..
        } = &self.parts;
        let eps_l = self.learned_epsilon.as_ref().map(Param::val);
        let tau = self.tau.val();
        Ok(frn(
            x,
            weights,
            eps_l,
            tau,
            *epsilon,
            affine.as_ref(),
            *kernels,
        ))
    }
}
