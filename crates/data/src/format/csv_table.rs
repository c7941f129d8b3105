//! Examples in a CSV table with a header row: the label in a named column, the features (or
//! pixels, row-major) in every other column, in file order.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::format::csv_record;
use crate::format::gzip::read_maybe_gzip;
use crate::images::Images;

/// The most classes a table may have: a class number is at most `MAX_CLASSES - 1`. A model
/// has one output per class, so a stray huge number (a value in the wrong column, a
/// placeholder such as 4000000000) would otherwise size an output layer of billions of
/// weights before anything else could go wrong.
pub const MAX_CLASSES: usize = 100_000;

/// Reads a CSV table (raw or gzipped) whose column `label` holds each example's class, an
/// integer from 0, and whose other columns hold its values. `shape` is one example's
/// `[C, H, W]` (channels-first images); without it every example is `[1, 1, F]`, a feature
/// vector. There are `max label + 1` classes, at most [`MAX_CLASSES`].
pub fn images_from_csv(path: &Path, label: &str, shape: Option<[usize; 3]>) -> Result<Images> {
    let bytes = read_maybe_gzip(path)?;
    let mut reader = csv::ReaderBuilder::new()
        // Checked below, so that the error names the line and the expected count.
        .flexible(true)
        .from_reader(bytes.as_slice());
    let header = reader
        .headers()
        .map_err(|err| DataError::format(path, format!("unreadable CSV header: {err}")))?
        .clone();
    let Some(label_column) = header.iter().position(|name| name.trim() == label) else {
        let columns: Vec<&str> = header.iter().take(8).collect();
        return Err(DataError::format(
            path,
            format!("no column `{label}` for the label; the header starts {columns:?}"),
        ));
    };
    let features = header.len() - 1;
    let shape = shape.unwrap_or([1, 1, features]);
    // Checked: the shape comes from an experiment file, and a product that wrapped around could
    // equal the column count.
    let values = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if values != Some(features) {
        let held = match values {
            Some(n) => format!("{n} values"),
            None => "more values than memory can address".into(),
        };
        return Err(DataError::format(
            path,
            format!("shape {shape:?} holds {held}, but the table has {features} feature columns"),
        ));
    }

    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for record in reader.records() {
        let (record, line) = csv_record(path, record)?;
        let bad = |problem: String| DataError::bad_line(path, line, problem);
        if record.len() != header.len() {
            return Err(bad(format!(
                "{} columns, the header has {}",
                record.len(),
                header.len()
            )));
        }
        for (column, (name, cell)) in header.iter().zip(record.iter()).enumerate() {
            let cell = cell.trim();
            if column == label_column {
                let class = cell.parse::<usize>().map_err(|_| {
                    bad(format!(
                        "label {cell:?} in column `{name}` is not a class number 0, 1, ..."
                    ))
                })?;
                if class >= MAX_CLASSES {
                    return Err(bad(format!(
                        "label {class} in column `{name}`: classes are numbered from 0 and a \
                         table may have at most {MAX_CLASSES} of them"
                    )));
                }
                labels.push(class);
            } else {
                let value = cell
                    .parse::<f32>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        bad(format!(
                            "{cell:?} in column `{name}` is not a finite number"
                        ))
                    })?;
                pixels.push(value);
            }
        }
    }
    let Some(&largest) = labels.iter().max() else {
        return Err(DataError::format(path, "no examples after the header"));
    };
    Ok(Images {
        pixels,
        labels,
        shape,
        classes: largest + 1,
    })
}
