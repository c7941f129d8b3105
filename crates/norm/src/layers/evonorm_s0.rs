//! EvoNorm-S0 (Liu et al. 2020): per-sample group statistics, its own activation.

use burn::module::Param;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::NormError;
use crate::family::Family;
use crate::kernel::{GroupSpec, evonorm_s0};
use crate::layers::{CommonParts, GroupNormConfig, common_parts};
use crate::options::{CheckOptions, builder, check_common, invalid};

/// Configuration of [`EvoNormS0`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvoNormS0Config {
    /// Channel groups of the standard deviation; must divide the number of features. Default
    /// 32, the paper's.
    pub groups: usize,
    /// Added to the group variance before the square root. Default `1e-5`, the paper's.
    pub epsilon: f64,
    /// Learn a per-channel `gamma` and `beta`. Default `true`.
    pub affine: bool,
    /// Initial value of `gamma`. Default `1.0`.
    pub gamma_init: f64,
}

/// Group norm's defaults, which are also the paper's: its statistics are group norm's.
impl Default for EvoNormS0Config {
    fn default() -> Self {
        let GroupNormConfig {
            groups,
            epsilon,
            affine,
            gamma_init,
            ..
        } = GroupNormConfig::default();
        Self {
            groups,
            epsilon,
            affine,
            gamma_init,
        }
    }
}

builder!(EvoNormS0Config {
    with_groups => groups: usize,
    with_epsilon => epsilon: f64,
    with_affine => affine: bool,
    with_gamma_init => gamma_init: f64,
});

impl CheckOptions for EvoNormS0Config {
    fn check_options(&self, num_features: usize) -> Result<(), NormError> {
        check_common(self.epsilon, self.gamma_init, None)?;
        if self.groups == 0 {
            return Err(invalid("groups", 0, "at least 1"));
        }
        if !num_features.is_multiple_of(self.groups) {
            let expected = format!("a divisor of num_features = {num_features}");
            return Err(invalid("groups", self.groups, &expected));
        }
        Ok(())
    }

    fn fitting_width(&self) -> usize {
        self.groups.max(1)
    }
}

impl EvoNormS0Config {
    /// Builds the layer for `num_features` channels.
    pub fn init(&self, num_features: usize, device: &Device) -> Result<EvoNormS0, NormError> {
        self.check(num_features)?;
        Ok(EvoNormS0 {
            parts: common_parts!(self, num_features, device),
            v: Param::from_tensor(Tensor::ones([num_features], device)),
            groups: self.groups,
        })
    }
}

/// EvoNorm-S0 (Liu, Brock, Simonyan & Le 2020): a norm and activation in one, found by search,
/// that uses no batch statistic: `y = x * sigmoid(v * x) / group_std(x) * gamma + beta`, with a
/// learned per-channel `v` (starting at 1).
///
/// `group_std` is the standard deviation of one sample's group of `C / groups` channels over all
/// positions (biased, `sqrt(var + eps)`), as in group norm; on dense input a group is `C /
/// groups` features. It brings its own activation
/// ([`Norm::includes_activation`](crate::Norm::includes_activation)).
#[derive(Module, Debug)]
pub struct EvoNormS0 {
    parts: CommonParts,
    v: Param<Tensor<1>>,
    groups: usize,
}

impl EvoNormS0 {
    /// The learned gate slope `v`, `[features]`.
    pub fn v(&self) -> Tensor<1> {
        self.v.val()
    }
}

impl Family for EvoNormS0 {
    fn describe(&self) -> String {
        let features = self.parts.num_features;
        format!("EvoNormS0({features} features, {} groups)", self.groups)
    }

    family_fields!(parts);

    fn includes_activation(&self) -> bool {
        true
    }

    /// `x: [N, C, S] -> [N, C, S]`, the standard deviation per (sample, group).
    fn normalize(&self, x: Tensor<3>, weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError> {
        let spec = GroupSpec {
            groups: self.groups,
            center: true,
            epsilon: self.parts.epsilon,
        };
        let affine = self.parts.affine.as_ref();
        Ok(evonorm_s0(
            x,
            weights,
            self.v.val(),
            spec,
            affine,
            self.parts.kernels,
        ))
    }
}
