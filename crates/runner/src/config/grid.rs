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
        ("model", "hidden", Some("mlp"))
            | ("model", "channels", _)
            | ("model", "widths", Some("resnet"))
            | ("train", "eval_lengths", _)
    )
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
