//! Options shared by several families (momentum, the running variance estimator) and the checks
//! every config goes through.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::NormError;

/// Which computation a norm layer runs. Both give the same numbers to float rounding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernels {
    /// normlab's fused kernels where the backend has them (flex; burn's CubeCL backends with the
    /// `wgpu` feature), burn's tensor ops elsewhere.
    #[default]
    Fastest,
    /// burn's tensor ops on every backend: what the fused kernels are measured against.
    Composed,
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

    pub(crate) fn check(self) -> Result<(), NormError> {
        match self {
            Self::Exponential(m) if !(0.0..=1.0).contains(&m) => Err(invalid(
                "momentum",
                m,
                "a number in [0, 1] or \"cumulative\"",
            )),
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

/// What every family's config checks before a layer is built: the feature count once, here,
/// then the family's own options.
pub(crate) trait CheckOptions {
    /// Checks the family's own options against `num_features` (known to be at least 1).
    fn check_options(&self, num_features: usize) -> Result<(), NormError>;

    /// A feature count that every check depending on the width accepts, so that checking
    /// against it finds exactly the options that are wrong whatever the width.
    fn fitting_width(&self) -> usize {
        1
    }

    fn check(&self, num_features: usize) -> Result<(), NormError> {
        if num_features == 0 {
            return Err(invalid("num_features", 0, "at least 1"));
        }
        self.check_options(num_features)
    }
}

/// The error for `field` holding `value` where `expected` was needed.
pub(crate) fn invalid(field: &'static str, value: impl fmt::Display, expected: &str) -> NormError {
    NormError::InvalidConfig {
        field,
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

pub(crate) fn check_epsilon(epsilon: f64) -> Result<(), NormError> {
    match epsilon > 0.0 && epsilon.is_finite() {
        true => Ok(()),
        false => Err(invalid("epsilon", epsilon, "a finite number > 0")),
    }
}

pub(crate) fn check_gamma_init(gamma_init: f64) -> Result<(), NormError> {
    match gamma_init.is_finite() {
        true => Ok(()),
        false => Err(invalid("gamma_init", gamma_init, "a finite number")),
    }
}

/// `epsilon`, `gamma_init` and (with running statistics) `momentum`: the options most families
/// share.
pub(crate) fn check_common(
    epsilon: f64,
    gamma_init: f64,
    momentum: Option<Momentum>,
) -> Result<(), NormError> {
    check_epsilon(epsilon)?;
    check_gamma_init(gamma_init)?;
    momentum.map_or(Ok(()), Momentum::check)
}

/// Generates the `with_<option>` builder methods of a config, one per listed field, so that every
/// family offers the same builder for the options it shares with the others. Written
/// `builder!(impl<K: Bound> Config<K> { ... })` for a generic config.
macro_rules! builder {
    (impl<$($g:ident: $bound:path),*> $config:ty { $($method:ident => $field:ident: $ty:ty),* $(,)? }) => {
        impl<$($g: $bound),*> $config {
            $(
                #[doc = concat!("The same config with `", stringify!($field), "` set.")]
                pub fn $method(self, $field: $ty) -> Self {
                    Self { $field, ..self }
                }
            )*
        }
    };
    ($config:ty { $($method:ident => $field:ident: $ty:ty),* $(,)? }) => {
        builder!(impl<> $config { $($method => $field: $ty),* });
    };
}
pub(crate) use builder;
