//! Where an error of a run's config is, when serde's path stops at a tagged table.
//!
//! The model, its norm and a data set's files are internally tagged tables (`kind = "group"`
//! with the options beside it). Serde reads such a table by buffering it whole, so an error in
//! an option is reported at the table: `model.norm`, not `model.norm.groups`. Such a table is
//! read again here, alone: its options by the type its tag names, with the path tracked, until
//! the path reaches the field at fault.

use normlab_model::ModelConfig;
use normlab_norm::NormConfig;
use serde_path_to_error::Track;
use toml::{Table, Value};

use super::DataFiles;

/// The tagged tables of a run, by where they sit.
const TAGGED: [Tagged; 3] = [Tagged::Files, Tagged::Model, Tagged::Norm];

#[derive(Clone, Copy)]
enum Tagged {
    /// `data.files`, tagged by `format`.
    Files,
    /// `model`, tagged by `kind`.
    Model,
    /// `model.norm`, tagged by `kind`.
    Norm,
}

impl Tagged {
    fn path(self) -> &'static str {
        match self {
            Self::Files => "data.files",
            Self::Model => "model",
            Self::Norm => "model.norm",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Self::Files => "format",
            Self::Model | Self::Norm => "kind",
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Self::Files => &DataFiles::FORMATS,
            Self::Model => &ModelConfig::KINDS,
            Self::Norm => &NormConfig::KINDS,
        }
    }

    /// Reads `options` (the table without its tag) as the `name` kind of this table: the error,
    /// if any, with its path below the table.
    fn read(self, name: &str, options: Value) -> Result<(), (String, toml::de::Error)> {
        let mut track = Track::new();
        let options = serde_path_to_error::Deserializer::new(options, &mut track);
        let read = match self {
            Self::Files => DataFiles::from_fields(name, options).map(drop),
            Self::Model => ModelConfig::from_options(name, options).map(drop),
            Self::Norm => NormConfig::from_options(name, options).map(drop),
        };
        read.map_err(|error| (track.path().to_string(), error))
    }
}

/// What is wrong in a run's config, and where.
#[derive(Debug, PartialEq)]
pub(super) struct Fault {
    /// The dotted field: `model.norm.groups`.
    pub field: String,
    /// Serde's message, first line.
    pub message: String,
}

/// Follows `error`, from deserializing the run `point`, into the tagged tables on its path.
pub(super) fn locate(point: &Table, error: serde_path_to_error::Error<toml::de::Error>) -> Fault {
    let first_line = |error: &toml::de::Error| {
        let message = error.to_string();
        message.lines().next().unwrap_or_default().to_string()
    };
    let mut fault = Fault {
        field: error.path().to_string(),
        message: first_line(error.inner()),
    };
    loop {
        let (Some(tagged), Some(Value::Table(table))) = (
            TAGGED.into_iter().find(|t| t.path() == fault.field),
            value_at(point, &fault.field),
        ) else {
            return fault;
        };
        let mut options = table.clone();
        // Without its tag, serde's "missing field" stands.
        let Some(name) = options.remove(tagged.tag()) else {
            return fault;
        };
        let Value::String(name) = name else {
            fault.field = format!("{}.{}", fault.field, tagged.tag());
            return fault;
        };
        if !tagged.names().contains(&name.as_str()) {
            fault.field = format!("{}.{}", fault.field, tagged.tag());
            return fault;
        }
        match tagged.read(&name, Value::Table(options)) {
            // Read alone it is fine: the error is the table's own.
            Ok(()) => return fault,
            Err((path, error)) => {
                fault.message = first_line(&error);
                // At the table itself (a field missing): no deeper to go.
                if path == "." {
                    return fault;
                }
                fault.field = format!("{}.{path}", fault.field);
            }
        }
    }
}

/// The value at the dotted `path` of `table`, through tables only.
fn value_at<'t>(table: &'t Table, path: &str) -> Option<&'t Value> {
    let (first, rest) = path.split_once('.').unwrap_or((path, ""));
    let value = table.get(first)?;
    match (rest, value) {
        ("", _) => Some(value),
        (rest, Value::Table(inner)) => value_at(inner, rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_of_a_tagged_table_reads_as_its_type_and_no_other_does() {
        for tagged in TAGGED {
            let read = |name: &str| tagged.read(name, Value::Table(Table::new()));
            for name in tagged.names() {
                // A kind with required fields misses them; none is an unknown name.
                if let Err((_, error)) = read(name) {
                    let message = error.to_string();
                    assert!(!message.contains("unknown variant"), "{name}: {message}");
                }
            }
            let (path, error) = read("no_such_kind").unwrap_err();
            assert_eq!(path, ".", "{}", tagged.path());
            assert!(error.to_string().contains("unknown variant `no_such_kind`"));
        }
    }
}
