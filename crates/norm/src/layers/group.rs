//! Group normalization (Wu & He 2018).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::NormError;
use crate::family::Family;
use crate::layers::{CommonParts, common_parts};
use crate::options::{CheckOptions, builder, check_common, invalid};

/// Configuration of [`GroupNorm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupNormConfig {
    /// Number of channel groups; must divide the number of features. Default 32, as in the GN
    /// paper; 1 group is layer norm over `C, H, W`, `C` groups is instance norm.
    pub groups: usize,
    /// Added to the variance before the square root. Default `1e-5`.
    pub epsilon: f64,
    /// Learn a per-channel `gamma` and `beta`. Default `true`.
    pub affine: bool,
    /// Initial value of `gamma`. Default `1.0`.
    pub gamma_init: f64,
    /// Channels in each group, in place of `groups`: a layer of `C` channels gets
    /// `C / channels_per_group` groups, so that layers of different widths group alike (the GN
    /// paper's second sweep, its Table 3). Must divide every width. Default none: `groups`
    /// decides.
    pub channels_per_group: Option<usize>,
}

impl Default for GroupNormConfig {
    fn default() -> Self {
        Self {
            groups: 32,
            epsilon: 1e-5,
            affine: true,
            gamma_init: 1.0,
            channels_per_group: None,
        }
    }
}

builder!(GroupNormConfig {
    with_groups => groups: usize,
    with_epsilon => epsilon: f64,
    with_affine => affine: bool,
    with_gamma_init => gamma_init: f64,
    with_channels_per_group => channels_per_group: Option<usize>,
});

impl CheckOptions for GroupNormConfig {
    fn check_options(&self, num_features: usize) -> Result<(), NormError> {
        check_common(self.epsilon, self.gamma_init, None)?;
        let (field, value) = match self.channels_per_group {
            Some(channels) => ("channels_per_group", channels),
            None => ("groups", self.groups),
        };
        if value == 0 {
            return Err(invalid(field, 0, "at least 1"));
        }
        if !num_features.is_multiple_of(value) {
            let expected = format!("a divisor of num_features = {num_features}");
            return Err(invalid(field, value, &expected));
        }
        Ok(())
    }

    fn fitting_width(&self) -> usize {
        self.channels_per_group.unwrap_or(self.groups).max(1)
    }
}

impl GroupNormConfig {
    /// A config with `groups` groups and every other option at its default.
    pub fn new(groups: usize) -> Self {
        Self::default().with_groups(groups)
    }

    /// Builds the layer for `num_features` channels.
    pub fn init(&self, num_features: usize, device: &Device) -> Result<GroupNorm, NormError> {
        self.check(num_features)?;
        Ok(GroupNorm {
            parts: common_parts!(self, num_features, device),
            groups: match self.channels_per_group {
                Some(channels) => num_features / channels,
                None => self.groups,
            },
        })
    }
}

/// Group normalization (Wu & He, 2018): each sample's channels are split into groups, and each
/// group is normalized over its channels and all spatial positions (or time steps).
///
/// Matches PyTorch's `nn.GroupNorm`. Statistics never mix samples, so train and eval compute the
/// same thing at any batch size.
#[derive(Module, Debug)]
pub struct GroupNorm {
    parts: CommonParts,
    groups: usize,
}

impl Family for GroupNorm {
    fn describe(&self) -> String {
        format!(
            "GroupNorm({} features, {} groups)",
            self.parts.num_features, self.groups
        )
    }

    family_fields!(parts);

    /// `x: [N, C, S] -> [N, C, S]`, statistics per (sample, group).
    fn normalize(&self, x: Tensor<3>, weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError> {
        Ok(self.parts.group_norm(x, weights, self.groups, true).0)
    }
}
