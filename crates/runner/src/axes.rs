//! The axes of a grid, typed: which field each one varies ([`AxisKey`]), a run's label on it
//! ([`Setting`]), and the value behind the label, read from the run's own config
//! ([`AxisValue`]). Every consumer names an axis by its key and reads values from the config,
//! so no label is ever parsed back into a value, and each axis name is spelled once, here.

use std::fmt;

use normlab_norm::NormConfig;
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;

/// A grid axis: a field of the experiment file given a list of values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AxisKey {
    /// `model.norm`.
    Norm,
    /// `train.batch_size`.
    BatchSize,
    /// `train.seed`.
    Seed,
    /// `train.lr`, the learning rate before scaling with the batch size.
    Lr,
    /// `model.init_scale`.
    InitScale,
    /// `train.l1`.
    L1,
    /// `train.l2`.
    L2,
    /// `train.norm_kernels`: fused kernels or burn's composed ops.
    NormKernels,
    /// `train.batches`: how training examples are grouped into batches.
    Batches,
    /// The results folder a run comes from, in a comparison of several.
    Experiment,
    /// Any other field, by its name (the last part of its path).
    Other(String),
}

impl AxisKey {
    /// The keys the runner knows by name, with their names.
    const KNOWN: [(AxisKey, &'static str); 10] = [
        (AxisKey::Norm, "norm"),
        (AxisKey::BatchSize, "batch_size"),
        (AxisKey::Seed, "seed"),
        (AxisKey::Lr, "lr"),
        (AxisKey::InitScale, "init_scale"),
        (AxisKey::L1, "l1"),
        (AxisKey::L2, "l2"),
        (AxisKey::NormKernels, "norm_kernels"),
        (AxisKey::Batches, "batches"),
        (AxisKey::Experiment, "experiment"),
    ];

    /// The axes that have plots and findings of their own (the seed is what spreads are taken
    /// over); every other axis with several values gets a comparison value by value.
    pub const WITH_VIEWS_OF_THEIR_OWN: [AxisKey; 5] = [
        AxisKey::Seed,
        AxisKey::Norm,
        AxisKey::BatchSize,
        AxisKey::Lr,
        AxisKey::InitScale,
    ];

    /// The key of the field called `name` (the last part of its path).
    pub fn from_name(name: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|(_, known)| *known == name)
            .map_or_else(|| Self::Other(name.to_string()), |(key, _)| key.clone())
    }

    /// The name, as in run ids, tables and `--only`: `batch_size`.
    pub fn name(&self) -> &str {
        match self {
            Self::Other(name) => name,
            known => {
                let (_, name) = Self::KNOWN
                    .iter()
                    .find(|(key, _)| key == known)
                    .expect("every key but Other is known");
                name
            }
        }
    }

    /// What the axis is called in a sentence or on a plot axis: `batch size`.
    pub fn describe(&self) -> String {
        match self {
            Self::BatchSize => "batch size".into(),
            Self::Lr => "learning rate".into(),
            Self::InitScale => "weight init scale".into(),
            Self::L1 => "L1 penalty".into(),
            Self::L2 => "L2 penalty".into(),
            Self::Batches => "batch composition".into(),
            other => other.name().replace('_', " "),
        }
    }

    /// The value of this axis in `config`; `None` for [`AxisKey::Experiment`], which no config
    /// holds, or a field the config does not have.
    pub fn value(&self, config: &RunConfig) -> Option<AxisValue> {
        let number = |v: f64| Some(AxisValue::Number(v));
        match self {
            Self::Norm => Some(AxisValue::Norm(Box::new(config.model.norm().clone()))),
            Self::BatchSize => number(config.train.batch_size as f64),
            Self::Seed => number(config.train.seed as f64),
            Self::Lr => number(config.train.lr),
            Self::L1 => number(config.train.l1),
            Self::L2 => number(config.train.l2),
            Self::InitScale | Self::NormKernels | Self::Batches | Self::Other(_) => {
                // The field by name in the first section that has it.
                let json = serde_json::to_value(config).ok()?;
                ["data", "model", "train"]
                    .iter()
                    .find_map(|section| json.get(section)?.get(self.name()).cloned())
                    .map(|value| match value.as_f64() {
                        Some(v) => AxisValue::Number(v),
                        None => AxisValue::Other(value),
                    })
            }
            Self::Experiment => None,
        }
    }
}

impl fmt::Display for AxisKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The value of an axis in a run's config.
#[derive(Debug, Clone, PartialEq)]
pub enum AxisValue {
    /// A number: a batch size, a learning rate, a seed.
    Number(f64),
    /// The norm.
    Norm(Box<NormConfig>),
    /// Anything else, as the config holds it.
    Other(serde_json::Value),
}

impl AxisValue {
    /// The number, for a numeric axis.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Self::Number(v) => Some(*v),
            _ => None,
        }
    }
}

/// A run's label on one axis: `batch_size = 8`, `norm = group(groups=4)`. Stored in a run
/// record as the pair `["batch_size", "8"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(String, String)", into = "(String, String)")]
pub struct Setting {
    /// The axis.
    pub key: AxisKey,
    /// The value as the grid wrote it, for ids, tables and legends.
    pub label: String,
}

impl From<(String, String)> for Setting {
    fn from((name, label): (String, String)) -> Self {
        Self {
            key: AxisKey::from_name(&name),
            label,
        }
    }
}

impl From<Setting> for (String, String) {
    fn from(setting: Setting) -> Self {
        (setting.key.name().to_string(), setting.label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_go_both_ways() {
        for (key, name) in AxisKey::KNOWN {
            assert_eq!(AxisKey::from_name(name), key);
            assert_eq!(key.name(), name);
        }
        let other = AxisKey::from_name("weight_decay");
        assert_eq!(other, AxisKey::Other("weight_decay".into()));
        assert_eq!(other.name(), "weight_decay");
        assert_eq!(other.describe(), "weight decay");
    }

    #[test]
    fn settings_are_stored_as_pairs() {
        let setting = Setting {
            key: AxisKey::BatchSize,
            label: "8".into(),
        };
        let json = serde_json::to_string(&setting).unwrap();
        assert_eq!(json, r#"["batch_size","8"]"#);
        assert_eq!(serde_json::from_str::<Setting>(&json).unwrap(), setting);
    }
}
