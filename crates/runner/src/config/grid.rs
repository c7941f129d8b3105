//! The grid of an experiment file: every list-valued field is an axis, and the grid is the
//! product of the axes.

use std::fmt::Write as _;

use normlab_model::ModelConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

use crate::config::SECTIONS;
use crate::config::schema::{DataConfig, TrainConfig};

/// Whether field `key` of `section` holds a list by nature (an axis of it is then a list of
/// lists), asked of the field's own type: does serde take an empty list for it? A model field
/// is asked of the model kind `table` names, or of each kind of a grid over kinds (every model
/// option has a default, so the kind and the field alone deserialize when the field takes a
/// list; the kind itself is one name); a `[data]` or `[train]` field is asked alone, and takes
/// a list unless the error is the field's own (a required field that is missing is reported at
/// the section, not at `key`).
fn is_native_list(table: &Table, section: &str, key: &str) -> bool {
    let mut probe = Table::new();
    probe.insert(key.to_string(), Value::Array(Vec::new()));
    let takes_list = |result: Result<(), serde_path_to_error::Error<toml::de::Error>>| {
        result.map_or_else(|e| e.path().to_string() != key, |()| true)
    };
    match section {
        "model" if key == "kind" => false,
        "model" => {
            // A grid over model kinds: a list for any of them.
            let kinds = match table.get("model").and_then(|m| m.get("kind")) {
                Some(Value::Array(kinds)) => kinds.clone(),
                Some(kind) => vec![kind.clone()],
                None => return false,
            };
            kinds.into_iter().any(|kind| {
                let mut probe = probe.clone();
                probe.insert("kind".into(), kind);
                ModelConfig::deserialize(Value::Table(probe)).is_ok()
            })
        }
        "data" => takes_list(probe_as::<DataConfig>(probe)),
        "train" => takes_list(probe_as::<TrainConfig>(probe)),
        _ => false,
    }
}

/// Deserializes `probe` as a `T`, keeping only where it failed.
fn probe_as<T: DeserializeOwned>(
    probe: Table,
) -> Result<(), serde_path_to_error::Error<toml::de::Error>> {
    serde_path_to_error::deserialize::<_, T>(Value::Table(probe)).map(|_| ())
}

/// A grid axis: the dotted path of a field and the values it takes.
pub(crate) type Axis = (String, Vec<Value>);

/// The values `value` gives field `section.key` of `table`: the items of a list that is an
/// axis, or `None` for a single value.
fn axis_values(table: &Table, section: &str, key: &str, value: &Value) -> Option<Vec<Value>> {
    let Value::Array(items) = value else {
        return None;
    };
    let nested = items.iter().all(|v| v.is_array());
    (!is_native_list(table, section, key) || (nested && !items.is_empty())).then(|| items.clone())
}

/// The grid axes: `(path, values)` in section order, then key order.
pub(crate) fn find_axes(table: &Table) -> Vec<Axis> {
    let mut axes = Vec::new();
    for section in SECTIONS {
        let Some(Value::Table(fields)) = table.get(section) else {
            continue;
        };
        for (key, value) in fields {
            if let Some(values) = axis_values(table, section, key, value) {
                axes.push((format!("{section}.{key}"), values));
            }
        }
    }
    axes
}

/// The axes of one `[[extra]]` block of `table`: the values it names for some of the grid's
/// axes (a list or a single value), every value of the grid for the others. An error names the
/// block's field that is not an axis of the grid.
pub(crate) fn extra_axes(
    table: &Table,
    axes: &[Axis],
    block: &Table,
) -> Result<Vec<Axis>, (String, String)> {
    let mut chosen = axes.to_vec();
    for (section, fields) in block {
        let Value::Table(fields) = fields else {
            let message = format!("expected a section: one of {}", SECTIONS.join(", "));
            return Err((section.clone(), message));
        };
        for (key, value) in fields {
            let path = format!("{section}.{key}");
            let Some((_, values)) = chosen.iter_mut().find(|(p, _)| *p == path) else {
                let names: Vec<&str> = axes.iter().map(|(p, _)| p.as_str()).collect();
                let message = format!(
                    "not an axis of the grid: an extra block adds values to the grid's axes ({})",
                    names.join(", ")
                );
                return Err((path, message));
            };
            *values = axis_values(table, section, key, value).unwrap_or(vec![value.clone()]);
            if values.is_empty() {
                return Err((path, "an empty list: name at least one value".into()));
            }
        }
    }
    Ok(chosen)
}

/// Every combination of one value per axis, the last axis varying fastest.
pub(crate) fn product(axes: &[Axis]) -> Vec<Vec<Value>> {
    axes.iter().fold(vec![Vec::new()], |points, (_, values)| {
        points
            .iter()
            .flat_map(|point| {
                values.iter().map(move |v| {
                    let mut next = point.clone();
                    next.push(v.clone());
                    next
                })
            })
            .collect()
    })
}

pub(crate) fn set(table: &mut Table, path: &str, value: Value) {
    let (section, key) = path.split_once('.').expect("axis paths are section.key");
    if let Some(Value::Table(fields)) = table.get_mut(section) {
        fields.insert(key.to_string(), value);
    }
}

/// A short label for an axis value: `0.1`, `batch`, `group(groups=4)`, `[16,32]`.
pub fn label(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Table(t) => {
            let kind = t.get("kind").map(label).unwrap_or_default();
            let options: Vec<String> = t
                .iter()
                .filter(|(k, _)| k.as_str() != "kind")
                .map(|(k, v)| format!("{k}={}", label(v)))
                .collect();
            match options.is_empty() {
                true => kind,
                false => format!("{kind}({})", options.join(",")),
            }
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(label).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// A file-name-safe id from the axis labels: `norm=group(groups=4),batch_size=8`.
pub(crate) fn run_id(axes: &[Axis], labels: &[String]) -> String {
    if axes.is_empty() {
        return "run".into();
    }
    let mut id = String::new();
    for ((path, _), label) in axes.iter().zip(labels) {
        let name = path.rsplit('.').next().unwrap_or(path);
        let _ = write!(id, "{}{name}={label}", if id.is_empty() { "" } else { "," });
    }
    id.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '=' | ',' | '-' | '_' | '(' | ')' => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An experiment table whose `[model]` is of `kind`.
    fn with_model(kind: &str) -> Table {
        toml::from_str(&format!("[model]\nkind = \"{kind}\"")).unwrap()
    }

    #[test]
    fn the_fields_that_hold_lists_are_found_from_their_types() {
        let lists = [
            ("mlp", "model", "hidden"),
            ("cnn", "model", "channels"),
            ("resnet", "model", "widths"),
            ("mlp", "train", "eval_lengths"),
        ];
        let scalars = [
            ("recurrent", "model", "hidden"),
            ("mlp", "model", "norm"),
            ("mlp", "model", "channels"),
            ("cnn", "model", "widths"),
            ("mlp", "train", "batch_size"),
            ("mlp", "train", "seed"),
            ("mlp", "train", "norm_kernels"),
            ("mlp", "data", "train_size"),
            ("mlp", "data", "scaling"),
            ("mlp", "train", "no_such_field"),
            ("no_such_kind", "model", "hidden"),
        ];
        // A grid over kinds: a list for one of them is a list.
        let table: Table = toml::from_str("[model]\nkind = [\"cnn\", \"mlp\"]").unwrap();
        assert!(is_native_list(&table, "model", "hidden"));
        assert!(!is_native_list(&table, "model", "kind"));
        for (kind, section, key) in lists {
            let table = with_model(kind);
            assert!(
                is_native_list(&table, section, key),
                "{kind}: {section}.{key}"
            );
        }
        for (kind, section, key) in scalars {
            let table = with_model(kind);
            assert!(
                !is_native_list(&table, section, key),
                "{kind}: {section}.{key}"
            );
        }
    }
}
