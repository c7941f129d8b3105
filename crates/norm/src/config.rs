//! `NormConfig`: the one serde-configurable choice of norm layer.

use std::str::FromStr;

use burn::prelude::*;
use serde::de::Error as _;
use serde::de::value::MapDeserializer;
use serde::{Deserialize, Deserializer, Serialize};

use crate::options::{CheckOptions, invalid};
use crate::{
    BatchNormConfig, BatchRenormConfig, EvoNormB0Config, EvoNormS0Config, FrnConfig,
    GroupNormConfig, InstanceNormConfig, LayerNormConfig, NoNorm, Norm, NormError,
    OnlineNormConfig, RmsNormConfig,
};

/// The one serde-configurable choice of norm layer.
///
/// In TOML it reads `{ kind = "group", groups = 8 }`, or just `"group"` for a kind with every
/// option at its default; every option not given takes the default documented on the family's
/// config. The number of features is not part of the config: the model that places the layer
/// knows it and passes it to [`init`](NormConfig::init).
// `remote = "Self"`: serde derives the tagged form as inherent functions, which the trait
// impls below call, so that a bare kind name deserializes too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", remote = "Self")]
pub enum NormConfig {
    /// No normalization: the input passes through (padded sequence steps still come out zero).
    None,
    /// [`BatchNorm`](crate::BatchNorm).
    Batch(BatchNormConfig),
    /// [`LayerNorm`](crate::LayerNorm).
    Layer(LayerNormConfig),
    /// [`InstanceNorm`](crate::InstanceNorm).
    Instance(InstanceNormConfig),
    /// [`GroupNorm`](crate::GroupNorm).
    Group(GroupNormConfig),
    /// [`RmsNorm`](crate::RmsNorm).
    Rms(RmsNormConfig),
    /// [`BatchRenorm`](crate::BatchRenorm).
    BatchRenorm(BatchRenormConfig),
    /// [`FilterResponseNorm`](crate::FilterResponseNorm), with its TLU.
    Frn(FrnConfig),
    /// [`EvoNormS0`](crate::EvoNormS0).
    #[serde(rename = "evonorm_s0")]
    EvoNormS0(EvoNormS0Config),
    /// [`EvoNormB0`](crate::EvoNormB0).
    #[serde(rename = "evonorm_b0")]
    EvoNormB0(EvoNormB0Config),
    /// [`OnlineNorm`](crate::OnlineNorm).
    Online(OnlineNormConfig),
}

impl Serialize for NormConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        NormConfig::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for NormConfig {
    /// A table with its `kind` (the tagged form), or a bare kind name.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KindOrTable;

        impl<'de> serde::de::Visitor<'de> for KindOrTable {
            type Value = NormConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a norm: a kind name or a table with `kind`")
            }

            fn visit_str<E: serde::de::Error>(self, kind: &str) -> Result<NormConfig, E> {
                // The one way parsing a kind fails: a name that is none of them.
                (kind.parse()).map_err(|_| E::unknown_variant(kind, &NormConfig::KINDS))
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                map: M,
            ) -> Result<NormConfig, M::Error> {
                NormConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }

        deserializer.deserialize_any(KindOrTable)
    }
}

/// "none" has no options: only the feature count to check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

impl CheckOptions for NoOptions {
    fn check_options(&self, _num_features: usize) -> Result<(), NormError> {
        Ok(())
    }
}

impl NormConfig {
    /// The names accepted for `kind`, in the order the docs list them.
    pub const KINDS: [&'static str; 11] = [
        "none",
        "batch",
        "layer",
        "instance",
        "group",
        "rms",
        "batch_renorm",
        "frn",
        "evonorm_s0",
        "evonorm_b0",
        "online",
    ];

    /// The config of kind `kind` read from its options alone: a table without the `kind` key.
    ///
    /// The tagged form is read by serde's internally tagged enums, which buffer the table, so an
    /// error in an option is reported at the table. Read here, every option keeps its own path
    /// (`norm.groups`), for callers that locate errors by it. An unknown kind is serde's
    /// unknown-variant error.
    pub fn from_options<'de, D: Deserializer<'de>>(
        kind: &str,
        options: D,
    ) -> Result<Self, D::Error> {
        Ok(match kind {
            "none" => {
                NoOptions::deserialize(options)?;
                Self::None
            }
            "batch" => Self::Batch(BatchNormConfig::deserialize(options)?),
            "layer" => Self::Layer(LayerNormConfig::deserialize(options)?),
            "instance" => Self::Instance(InstanceNormConfig::deserialize(options)?),
            "group" => Self::Group(GroupNormConfig::deserialize(options)?),
            "rms" => Self::Rms(RmsNormConfig::deserialize(options)?),
            "batch_renorm" => Self::BatchRenorm(BatchRenormConfig::deserialize(options)?),
            "frn" => Self::Frn(FrnConfig::deserialize(options)?),
            "evonorm_s0" => Self::EvoNormS0(EvoNormS0Config::deserialize(options)?),
            "evonorm_b0" => Self::EvoNormB0(EvoNormB0Config::deserialize(options)?),
            "online" => Self::Online(OnlineNormConfig::deserialize(options)?),
            other => return Err(D::Error::unknown_variant(other, &Self::KINDS)),
        })
    }

    /// The `kind` name of this config.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Batch(_) => "batch",
            Self::Layer(_) => "layer",
            Self::Instance(_) => "instance",
            Self::Group(_) => "group",
            Self::Rms(_) => "rms",
            Self::BatchRenorm(_) => "batch_renorm",
            Self::Frn(_) => "frn",
            Self::EvoNormS0(_) => "evonorm_s0",
            Self::EvoNormB0(_) => "evonorm_b0",
            Self::Online(_) => "online",
        }
    }

    /// True for the families that are their own activation (FRN with its TLU, EvoNorm): a model
    /// puts no other activation after them.
    pub fn includes_activation(&self) -> bool {
        matches!(self, Self::Frn(_) | Self::EvoNormS0(_) | Self::EvoNormB0(_))
    }

    /// True for the families whose statistics come from the batch (batch norm and its
    /// variants), which differ between training and eval.
    pub fn uses_batch_statistics(&self) -> bool {
        matches!(
            self,
            Self::Batch(_) | Self::BatchRenorm(_) | Self::EvoNormB0(_)
        )
    }

    /// The same config with `gamma` starting at `gamma_init` (no effect without affine, or on
    /// `none`). Recurrent batch norm starts at 0.1 to keep `tanh` and `sigmoid` out of saturation.
    pub fn with_gamma_init(self, gamma_init: f64) -> Self {
        match self {
            Self::None => Self::None,
            Self::Batch(c) => Self::Batch(c.with_gamma_init(gamma_init)),
            Self::Layer(c) => Self::Layer(c.with_gamma_init(gamma_init)),
            Self::Instance(c) => Self::Instance(c.with_gamma_init(gamma_init)),
            Self::Group(c) => Self::Group(c.with_gamma_init(gamma_init)),
            Self::Rms(c) => Self::Rms(c.with_gamma_init(gamma_init)),
            Self::BatchRenorm(c) => Self::BatchRenorm(c.with_gamma_init(gamma_init)),
            Self::Frn(c) => Self::Frn(c.with_gamma_init(gamma_init)),
            Self::EvoNormS0(c) => Self::EvoNormS0(c.with_gamma_init(gamma_init)),
            Self::EvoNormB0(c) => Self::EvoNormB0(c.with_gamma_init(gamma_init)),
            Self::Online(c) => Self::Online(c.with_gamma_init(gamma_init)),
        }
    }

    fn options(&self) -> &dyn CheckOptions {
        match self {
            Self::None => &NoOptions {},
            Self::Batch(c) => c,
            Self::Layer(c) => c,
            Self::Instance(c) => c,
            Self::Group(c) => c,
            Self::Rms(c) => c,
            Self::BatchRenorm(c) => c,
            Self::Frn(c) => c,
            Self::EvoNormS0(c) => c,
            Self::EvoNormB0(c) => c,
            Self::Online(c) => c,
        }
    }

    /// Checks every option against `num_features` without building anything: the same checks,
    /// and the same errors, as [`init`](NormConfig::init).
    pub fn validate(&self, num_features: usize) -> Result<(), NormError> {
        self.options().check(num_features)
    }

    /// Checks the options that are wrong whatever the number of features (`epsilon <= 0`, a
    /// momentum outside `[0, 1]`, `per_step = 0`, `groups = 0`, ...), so that a config can be
    /// refused as soon as it is read. What depends on the width (whether `groups` divides it) is
    /// left to [`validate`](NormConfig::validate) and [`init`](NormConfig::init).
    pub fn validate_options(&self) -> Result<(), NormError> {
        let options = self.options();
        options.check(options.fitting_width())
    }

    /// Builds the layer for `num_features` channels (dim 1 of channels-first input, the last dim
    /// of a sequence).
    pub fn init(&self, num_features: usize, device: &Device) -> Result<Norm, NormError> {
        Ok(match self {
            Self::None => {
                NoOptions {}.check(num_features)?;
                Norm::None(NoNorm::new(num_features))
            }
            Self::Batch(c) => Norm::Batch(c.init(num_features, device)?),
            Self::Layer(c) => Norm::Layer(c.init(num_features, device)?),
            Self::Instance(c) => Norm::Instance(c.init(num_features, device)?),
            Self::Group(c) => Norm::Group(c.init(num_features, device)?),
            Self::Rms(c) => Norm::Rms(c.init(num_features, device)?),
            Self::BatchRenorm(c) => Norm::BatchRenorm(c.init(num_features, device)?),
            Self::Frn(c) => Norm::Frn(c.init(num_features, device)?),
            Self::EvoNormS0(c) => Norm::EvoNormS0(c.init(num_features, device)?),
            Self::EvoNormB0(c) => Norm::EvoNormB0(c.init(num_features, device)?),
            Self::Online(c) => Norm::Online(c.init(num_features, device)?),
        })
    }
}

/// Parses a bare kind name (`"group"`) into that family's default config.
impl FromStr for NormConfig {
    type Err = NormError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let no_options = MapDeserializer::<_, serde::de::value::Error>::new(std::iter::empty::<(
            String,
            String,
        )>());
        Self::from_options(name, no_options).map_err(|_| {
            let expected = format!("one of {}", Self::KINDS.join(", "));
            invalid("kind", format!("{name:?}"), &expected)
        })
    }
}
