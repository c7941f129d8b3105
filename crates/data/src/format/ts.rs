//! The UEA/UCR `.ts` time-series format.
//!
//! `#` lines are comments; `@name value...` header lines come first, up to a line `@data`; then
//! each line is one case: its dimensions separated by `:`, each dimension's values separated by
//! `,`, and the class label last, e.g. `1.0,2.0,3.0:4.0,5.0,6.0:speaker_a` (2 dimensions, 3 steps).

use std::path::Path;

use crate::error::{DataError, Result};
use crate::format::gzip::read_text;
use crate::sequences::Sequences;

/// Read a classification `.ts` file (raw or gzipped) into [`Sequences`].
///
/// Needs an `@classLabel true <labels...>` header: labels become indices in header order.
/// Cases may differ in length, but within a case every dimension must have the same number of
/// values. The number of dimensions is `@dimensions` if given, else that of the first case, and
/// must be the same for all cases. Timestamps and missing values (`?`) are not supported.
pub fn read_ts(path: impl AsRef<Path>) -> Result<Sequences> {
    let path = path.as_ref();
    parse(path, &read_text(path)?)
}

fn parse(path: &Path, text: &str) -> Result<Sequences> {
    let mut class_names: Option<Vec<String>> = None;
    let mut features: Option<usize> = None;
    let mut in_data = false;
    let mut values = Vec::new();
    let mut labels = Vec::new();

    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |problem: String| DataError::bad_line(path, line_no, problem);
        if in_data {
            let names = class_names.as_deref().unwrap_or_default();
            let case = parse_case(line, names, features).map_err(bad)?;
            features = Some(case.features);
            values.push(case.values);
            labels.push(case.label);
            continue;
        }

        let Some(header) = line.strip_prefix('@') else {
            return Err(bad("a data line before the `@data` header".into()));
        };
        let mut words = header.split_whitespace();
        let key = words.next().unwrap_or_default().to_ascii_lowercase();
        match key.as_str() {
            "classlabel" => {
                if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("true")) {
                    return Err(bad(
                        "only labelled data is supported: expected `@classLabel true <labels...>`"
                            .into(),
                    ));
                }
                let names: Vec<String> = words.map(str::to_owned).collect();
                if names.is_empty() {
                    return Err(bad("`@classLabel true` lists no class labels".into()));
                }
                class_names = Some(names);
            }
            "dimensions" => {
                let value = words.next().unwrap_or_default();
                match value.parse::<usize>() {
                    Ok(n) if n > 0 => features = Some(n),
                    _ => {
                        return Err(bad(format!(
                            "`@dimensions {value}` is not a positive count"
                        )));
                    }
                }
            }
            "data" => {
                if class_names.is_none() {
                    return Err(bad(
                        "no `@classLabel true <labels...>` header before `@data`".into(),
                    ));
                }
                in_data = true;
            }
            // The other headers (`@problemName`, `@equalLength`, ...) describe what the data
            // lines show anyway.
            _ => {}
        }
    }

    match (features, class_names) {
        (Some(features), Some(class_names)) if !values.is_empty() => Ok(Sequences {
            values,
            labels,
            features,
            classes: class_names.len(),
            class_names,
        }),
        _ if in_data => Err(DataError::format(path, "no cases after `@data`")),
        _ => Err(DataError::format(path, "no `@data` line")),
    }
}

struct Case {
    /// Step-major, `steps * features`.
    values: Vec<f32>,
    features: usize,
    label: usize,
}

/// One data line; the error is the problem, without the line number.
fn parse_case(line: &str, class_names: &[String], features: Option<usize>) -> Result<Case, String> {
    let mut parts: Vec<&str> = line.split(':').collect();
    let label_text = parts.pop().unwrap_or_default().trim();
    if parts.is_empty() {
        return Err("no `:` between the values and the class label".into());
    }
    if let Some(expected) = features
        && parts.len() != expected
    {
        return Err(format!("{} dimensions, expected {expected}", parts.len()));
    }
    let label = class_names
        .iter()
        .position(|name| name == label_text)
        .ok_or_else(|| {
            format!("unknown class label `{label_text}`; @classLabel declares {class_names:?}")
        })?;

    let dims = parts
        .iter()
        .enumerate()
        .map(|(d, part)| parse_dimension(d + 1, part))
        .collect::<Result<Vec<_>, _>>()?;
    let steps = dims[0].len();
    if let Some((d, dim)) = dims.iter().enumerate().find(|(_, dim)| dim.len() != steps) {
        return Err(format!(
            "dimension {} has {} values but dimension 1 has {steps}; \
             all dimensions of a case must have the same length",
            d + 1,
            dim.len()
        ));
    }

    // The file is dimension-major; transpose so that features are the last axis.
    let values = (0..steps)
        .flat_map(|t| dims.iter().map(move |dim| dim[t]))
        .collect();
    Ok(Case {
        values,
        features: dims.len(),
        label,
    })
}

/// The comma-separated values of dimension `d` (1-based, for messages).
fn parse_dimension(d: usize, text: &str) -> Result<Vec<f32>, String> {
    text.split(',')
        .enumerate()
        .map(|(t, token)| {
            let token = token.trim();
            token
                .parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    format!(
                        "dimension {d}, value {}: `{token}` is not a finite number",
                        t + 1
                    )
                })
        })
        .collect()
}
