//! The grid of an experiment file: every list-valued field is an axis, and the grid is the
//! product of the axes.

use std::fmt::Write as _;

use toml::{Table, Value};

use crate::config::SECTIONS;

/// Fields that hold a list by nature: an axis only as a list of lists.
fn is_native_list(table: &Table, section: &str, key: &str) -> bool {
    let model_kind = table
        .get("model")
        .and_then(|m| m.get("kind"))
        .and_then(Value::as_str);
    matches!(
        (section, key, model_kind),
        ("model", "hidden", Some("mlp")) | ("model", "channels", _) | ("train", "eval_lengths", _)
    )
}

/// The grid axes: `(path, values)` in section order, then key order.
pub(crate) fn find_axes(table: &Table) -> Vec<(String, Vec<Value>)> {
    let mut axes = Vec::new();
    for section in SECTIONS {
        let Some(Value::Table(fields)) = table.get(section) else {
            continue;
        };
        for (key, value) in fields {
            let Value::Array(items) = value else { continue };
            let nested = items.iter().all(|v| v.is_array());
            if !is_native_list(table, section, key) || (nested && !items.is_empty()) {
                axes.push((format!("{section}.{key}"), items.clone()));
            }
        }
    }
    axes
}

/// Every combination of one value per axis, the last axis varying fastest.
pub(crate) fn product(axes: &[(String, Vec<Value>)]) -> Vec<Vec<Value>> {
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

/// `norm = "batch"` is short for `norm = { kind = "batch" }`.
pub(crate) fn expand_norm_shorthand(table: &mut Table) {
    if let Some(Value::Table(model)) = table.get_mut("model")
        && let Some(Value::String(kind)) = model.get("norm")
    {
        let mut norm = Table::new();
        norm.insert("kind".into(), Value::String(kind.clone()));
        model.insert("norm".into(), Value::Table(norm));
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
pub(crate) fn run_id(axes: &[(String, Vec<Value>)], labels: &[String]) -> String {
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
