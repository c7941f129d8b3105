//! A run's training budget, written in `[train]` as one of two fields, `epochs` or `samples`,
//! and held as one value.
//!
//! Serde maps one key to one field, so [`TrainConfig`] is read through [`TakeBudget`]: a map
//! that hands every key to the derived deserializer except the two budget keys, which it takes
//! out on the way. Nothing is buffered, so an error inside any field keeps its path
//! (`train.samples`), and the file needs no rewriting first.

use std::marker::PhantomData;
use std::sync::LazyLock;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeSeed, Error as _, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::TrainConfig;

/// How long a run trains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Passes over the training set (finite, > 0).
    Epochs(f64),
    /// Examples seen, so that small and large batches see the same data; 0 trains nothing and
    /// evaluates (and measures) the model at initialization.
    Samples(usize),
}

/// The two keys.
const KEYS: [&str; 2] = ["epochs", "samples"];

/// What a budget must be.
const MISSING: &str = "give exactly one training budget: `epochs` (> 0) or `samples` (0 \
                       measures the model at initialization only)";

impl Budget {
    /// The examples this budget trains on, given the size of the training set.
    pub fn samples(self, train_examples: usize) -> usize {
        match self {
            Self::Epochs(epochs) => (epochs * train_examples as f64).round() as usize,
            Self::Samples(samples) => samples,
        }
    }

    /// Stands in for the budget while [`TrainConfig`]'s other fields are read.
    pub(super) fn unread() -> Self {
        Self::Samples(0)
    }
}

/// Both keys, the unused one null: the form run records have always had.
impl Serialize for Budget {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (epochs, samples) = match *self {
            Self::Epochs(epochs) => (Some(epochs), None),
            Self::Samples(samples) => (None, Some(samples)),
        };
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(KEYS[0], &epochs)?;
        map.serialize_entry(KEYS[1], &samples)?;
        map.end()
    }
}

impl Serialize for TrainConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TrainConfig::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for TrainConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;

        impl<'de> Visitor<'de> for Fields {
            type Value = TrainConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of training options")
            }

            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<TrainConfig, M::Error> {
                let mut taken = Taken::default();
                let mut config =
                    TrainConfig::deserialize(MapAccessDeserializer::new(TakeBudget {
                        map,
                        taken: &mut taken,
                    }))?;
                config.budget = match taken {
                    Taken {
                        epochs: Some(epochs),
                        ..
                    } => Budget::Epochs(epochs),
                    Taken {
                        samples: Some(samples),
                        ..
                    } => Budget::Samples(samples),
                    _ => return Err(M::Error::custom(MISSING)),
                };
                Ok(config)
            }
        }

        deserializer.deserialize_map(Fields)
    }
}

/// The budget keys read so far. A key given twice is refused by the file's parser.
#[derive(Default)]
struct Taken {
    epochs: Option<f64>,
    samples: Option<usize>,
}

/// The map of `[train]` without its budget keys, which it reads into `taken`.
struct TakeBudget<'a, M> {
    map: M,
    taken: &'a mut Taken,
}

impl<'de, M: MapAccess<'de>> MapAccess<'de> for TakeBudget<'_, M> {
    type Error = M::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        mut seed: K,
    ) -> Result<Option<K::Value>, M::Error> {
        loop {
            seed = match self.map.next_key_seed(Key(seed))? {
                None => return Ok(None),
                Some(Keyed::Field(key)) => return Ok(Some(key)),
                Some(Keyed::Epochs(seed)) => {
                    let other = self.taken.samples.map(|_| KEYS[1]);
                    let value =
                        BudgetValue(other, |&e: &f64| e > 0.0 && e.is_finite(), PhantomData);
                    self.taken.epochs = self.map.next_value_seed(value)?;
                    seed
                }
                Some(Keyed::Samples(seed)) => {
                    let other = self.taken.epochs.map(|_| KEYS[0]);
                    let value = BudgetValue(other, |_: &usize| true, PhantomData);
                    self.taken.samples = self.map.next_value_seed(value)?;
                    seed
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, M::Error> {
        self.map.next_value_seed(seed)
    }
}

/// Reads a budget key's value, null as none: `BudgetValue(other key if given, whether the value
/// is in range)`. Either
/// refusal is made inside the value's own deserialization, so it is reported at its path.
struct BudgetValue<T>(Option<&'static str>, fn(&T) -> bool, PhantomData<T>);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for BudgetValue<T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        let Self(other, in_range, _) = self;
        // Run records write the unused key as null.
        let Some(value) = Option::<T>::deserialize(deserializer)? else {
            return Ok(None);
        };
        if let Some(other) = other {
            return Err(D::Error::custom(format!(
                "`{other}` is given too: {MISSING}"
            )));
        }
        match in_range(&value) {
            true => Ok(Some(value)),
            false => Err(D::Error::custom(
                "must be a finite number > 0 (`samples = 0` trains nothing)",
            )),
        }
    }
}

/// Reads a key: a budget key gives the seed back for the next key; any other key goes to the
/// derived deserializer's seed, inside the key's own deserialization, so that an unknown key
/// is reported at its path.
struct Key<S>(S);

enum Keyed<S, K> {
    Field(K),
    Epochs(S),
    Samples(S),
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Key<S> {
    type Value = Keyed<S, S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let key = String::deserialize(deserializer)?;
        match key.as_str() {
            "epochs" => Ok(Keyed::Epochs(self.0)),
            "samples" => Ok(Keyed::Samples(self.0)),
            // The derived code would name its fields only, without the budget's.
            _ if !FIELDS.contains(&key.as_str()) => Err(D::Error::unknown_field(&key, &FIELDS)),
            _ => self
                .0
                .deserialize(key.into_deserializer())
                .map(Keyed::Field),
        }
    }
}

/// Every field `[train]` may hold: the derived ones, then the budget's.
static FIELDS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut derived = None;
    // The recorder fails once it has the names: the result is of no use.
    let _ = TrainConfig::deserialize(FieldRecorder(&mut derived));
    let mut fields = derived.expect("a derived struct names its fields").to_vec();
    fields.extend(KEYS);
    fields
});

/// A deserializer that only records the field names a derived struct asks it for.
struct FieldRecorder<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for FieldRecorder<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(Self::Error::custom("records a struct's field names only"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(Self::Error::custom("field names recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[train]` with `extra` lines added to the two required fields.
    fn train(extra: &str) -> Result<TrainConfig, String> {
        let text = format!("batch_size = 4\nlr = 0.1\n{extra}");
        let table: toml::Table = text.parse().unwrap();
        serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    #[test]
    fn either_key_gives_the_budget_and_records_keep_their_form() {
        let config = train("epochs = 2.5").unwrap();
        assert_eq!(config.budget, Budget::Epochs(2.5));
        assert_eq!(config.budget.samples(1000), 2500);
        let config = train("samples = 0\nevals = 4").unwrap();
        assert_eq!((config.budget, config.evals), (Budget::Samples(0), 4));

        // Written as records have always been: both keys, the unused one null, in the place
        // the two fields had; and read back.
        let json = serde_json::to_string(&config).unwrap();
        assert!(
            json.contains(r#""lr_reference_batch":null,"epochs":null,"samples":0,"evals":4"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), config);
    }

    #[test]
    fn a_budget_missing_doubled_or_out_of_range_is_refused_at_its_key() {
        let err = train("").unwrap_err();
        assert!(
            err.starts_with(".: give exactly one training budget"),
            "{err}"
        );
        let err = train("epochs = 1\nsamples = 10").unwrap_err();
        assert!(err.starts_with("samples: `epochs` is given too"), "{err}");
        for epochs in ["-1.0", "0", "inf", "nan"] {
            let err = train(&format!("epochs = {epochs}")).unwrap_err();
            assert!(
                err.starts_with("epochs: must be a finite number > 0"),
                "{err}"
            );
        }
        let err = train("samples = -3").unwrap_err();
        assert!(err.starts_with("samples: invalid value"), "{err}");
        // Any other key still goes to the derived code, which knows its path; an unknown one
        // is told every field, the budget's too.
        let err = train("samples = 3\nevals = \"x\"").unwrap_err();
        assert!(err.starts_with("evals: invalid type"), "{err}");
        let err = train("samples = 3\nepoch = 2").unwrap_err();
        assert!(err.starts_with("epoch: unknown field `epoch`"), "{err}");
        assert!(err.contains("`lr`, `momentum`"), "{err}");
        assert!(err.trim_end().ends_with("`epochs`, `samples`"), "{err:?}");
    }
}
