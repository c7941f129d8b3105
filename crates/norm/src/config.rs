use std::fmt;
use std::str::FromStr;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{
    BatchNormConfig, GroupNormConfig, InstanceNormConfig, LayerNormConfig, NoNorm, Norm, NormError,
    RmsNormConfig,
};

/// The one serde-configurable choice of norm layer.
///
/// In TOML it reads `{ kind = "group", groups = 8 }`; every option not given takes the default
/// documented on the family's config. The number of features is not part of the config: the
/// model that places the layer knows it and passes it to [`init`](NormConfig::init).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NormConfig {
    /// No normalization: the input passes through (padded sequence steps still come out zero).
    None,
    Batch(BatchNormConfig),
    Layer(LayerNormConfig),
    Instance(InstanceNormConfig),
    Group(GroupNormConfig),
    Rms(RmsNormConfig),
}

impl NormConfig {
    /// The names accepted for `kind`, in the order the docs list them.
    pub const KINDS: [&'static str; 6] = ["none", "batch", "layer", "instance", "group", "rms"];

    /// The `kind` name of this config.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Batch(_) => "batch",
            Self::Layer(_) => "layer",
            Self::Instance(_) => "instance",
            Self::Group(_) => "group",
            Self::Rms(_) => "rms",
        }
    }

    /// The same config with `gamma` starting at `gamma_init` (no effect without affine, or on
    /// `none`). Recurrent batch norm starts at 0.1 to keep `tanh` and `sigmoid` out of saturation.
    pub fn with_gamma_init(self, gamma_init: f64) -> Self {
        match self {
            Self::None => Self::None,
            Self::Batch(c) => Self::Batch(c.with_gamma_init(gamma_init)),
            Self::Layer(c) => Self::Layer(c.with_gamma_init(gamma_init)),
            Self::Instance(c) => Self::Instance(InstanceNormConfig { gamma_init, ..c }),
            Self::Group(c) => Self::Group(GroupNormConfig { gamma_init, ..c }),
            Self::Rms(c) => Self::Rms(RmsNormConfig { gamma_init, ..c }),
        }
    }

    /// Checks every option against `num_features` without building anything.
    pub fn validate(&self, num_features: usize) -> Result<(), NormError> {
        check_features(num_features)?;
        match self {
            Self::None => Ok(()),
            Self::Batch(c) => c.validate(),
            Self::Layer(c) => c.validate(),
            Self::Instance(c) => c.validate(),
            Self::Group(c) => c.validate(num_features),
            Self::Rms(c) => c.validate(),
        }
    }

    /// Builds the layer for `num_features` channels (dim 1 of channels-first input, the last dim
    /// of a sequence).
    pub fn init(&self, num_features: usize, device: &Device) -> Result<Norm, NormError> {
        Ok(match self {
            Self::None => {
                check_features(num_features)?;
                Norm::None(NoNorm { num_features })
            }
            Self::Batch(c) => Norm::Batch(c.init(num_features, device)?),
            Self::Layer(c) => Norm::Layer(c.init(num_features, device)?),
            Self::Instance(c) => Norm::Instance(c.init(num_features, device)?),
            Self::Group(c) => Norm::Group(c.init(num_features, device)?),
            Self::Rms(c) => Norm::Rms(c.init(num_features, device)?),
        })
    }
}

/// Parses a bare kind name (`"group"`) into that family's default config.
impl FromStr for NormConfig {
    type Err = NormError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "none" => Self::None,
            "batch" => Self::Batch(BatchNormConfig::default()),
            "layer" => Self::Layer(LayerNormConfig::default()),
            "instance" => Self::Instance(InstanceNormConfig::default()),
            "group" => Self::Group(GroupNormConfig::default()),
            "rms" => Self::Rms(RmsNormConfig::default()),
            other => {
                return Err(NormError::InvalidConfig {
                    field: "kind",
                    value: format!("{other:?}"),
                    expected: format!("one of {}", Self::KINDS.join(", ")),
                });
            }
        })
    }
}

/// How running statistics fold in each new batch.
///
/// Written in a config as a number in `[0, 1]` or as the word `"cumulative"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "MomentumRepr", into = "MomentumRepr")]
pub enum Momentum {
    /// `running = (1 - m) * running + m * batch` (PyTorch's convention; Keras calls `1 - m` the
    /// momentum).
    Exponential(f64),
    /// The plain average of every batch seen so far (PyTorch's `momentum=None`).
    Cumulative,
}

impl Default for Momentum {
    fn default() -> Self {
        Self::Exponential(0.1)
    }
}

impl Momentum {
    /// The momentum as the layer stores it: `None` means cumulative.
    pub(crate) fn factor(self) -> Option<f64> {
        match self {
            Self::Exponential(m) => Some(m),
            Self::Cumulative => None,
        }
    }

    pub(crate) fn validate(self) -> Result<(), NormError> {
        match self {
            Self::Exponential(m) if !(0.0..=1.0).contains(&m) => Err(NormError::InvalidConfig {
                field: "momentum",
                value: m.to_string(),
                expected: "a number in [0, 1] or \"cumulative\"".into(),
            }),
            _ => Ok(()),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum MomentumRepr {
    Number(f64),
    Word(String),
}

impl TryFrom<MomentumRepr> for Momentum {
    type Error = String;

    fn try_from(repr: MomentumRepr) -> Result<Self, Self::Error> {
        match repr {
            MomentumRepr::Number(m) => Ok(Self::Exponential(m)),
            MomentumRepr::Word(w) if w == "cumulative" => Ok(Self::Cumulative),
            MomentumRepr::Word(w) => Err(format!(
                "momentum must be a number in [0, 1] or \"cumulative\", got {w:?}"
            )),
        }
    }
}

impl From<Momentum> for MomentumRepr {
    fn from(m: Momentum) -> Self {
        match m {
            Momentum::Exponential(m) => Self::Number(m),
            Momentum::Cumulative => Self::Word("cumulative".into()),
        }
    }
}

/// Which batch variance the running variance averages.
///
/// Training always normalizes with the biased variance; only the running estimate differs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunningVariance {
    /// `n / (n - 1)` times the batch variance, as the BN paper's inference algorithm and PyTorch
    /// do.
    #[default]
    Unbiased,
    /// The batch variance as used for normalization, as burn-nn 0.22 does.
    Biased,
}

impl fmt::Display for RunningVariance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unbiased => "unbiased",
            Self::Biased => "biased",
        })
    }
}

pub(crate) fn check_features(num_features: usize) -> Result<(), NormError> {
    if num_features == 0 {
        return Err(NormError::InvalidConfig {
            field: "num_features",
            value: "0".into(),
            expected: "at least 1".into(),
        });
    }
    Ok(())
}

pub(crate) fn check_epsilon(epsilon: f64) -> Result<(), NormError> {
    if !(epsilon > 0.0 && epsilon.is_finite()) {
        return Err(NormError::InvalidConfig {
            field: "epsilon",
            value: epsilon.to_string(),
            expected: "a finite number > 0".into(),
        });
    }
    Ok(())
}

pub(crate) fn check_gamma_init(gamma_init: f64) -> Result<(), NormError> {
    if !gamma_init.is_finite() {
        return Err(NormError::InvalidConfig {
            field: "gamma_init",
            value: gamma_init.to_string(),
            expected: "a finite number".into(),
        });
    }
    Ok(())
}
