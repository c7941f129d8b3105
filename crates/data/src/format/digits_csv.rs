//! scikit-learn's digits, from the CSV file embedded in the repository.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::format::csv_record;
use crate::format::gzip::read_maybe_gzip;
use crate::images::Images;

const SIDE: usize = 8;
const PIXELS: usize = SIDE * SIDE;
const MAX_PIXEL: f32 = 16.0;
const CLASSES: usize = 10;

/// Digits in scikit-learn's CSV layout, raw or gzipped: no header, one image a line, 64 pixel
/// values (0..=16, row-major) then the label 0..9.
pub fn digits_from(path: impl AsRef<Path>) -> Result<Images> {
    let path = path.as_ref();
    let bytes = read_maybe_gzip(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        // Checked below, so that the error names the line and the expected count.
        .flexible(true)
        .from_reader(bytes.as_slice());

    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for record in reader.records() {
        let (record, line) = csv_record(path, record)?;
        let bad = |problem: String| DataError::bad_line(path, line, problem);
        if record.len() != PIXELS + 1 {
            return Err(bad(format!(
                "{} columns, expected {} ({PIXELS} pixels and the label)",
                record.len(),
                PIXELS + 1
            )));
        }
        for (column, field) in record.iter().take(PIXELS).enumerate() {
            match field.trim().parse::<f32>() {
                Ok(value) if (0.0..=MAX_PIXEL).contains(&value) => pixels.push(value),
                _ => {
                    return Err(bad(format!(
                        "column {}: pixel `{field}` is not a number in 0..={MAX_PIXEL}",
                        column + 1
                    )));
                }
            }
        }
        let label_field = &record[PIXELS];
        match label_field.trim().parse::<usize>() {
            Ok(label) if label < CLASSES => labels.push(label),
            _ => {
                return Err(bad(format!(
                    "label `{label_field}` is not a class in 0..{CLASSES}"
                )));
            }
        }
    }
    if labels.is_empty() {
        return Err(DataError::format(path, "no images"));
    }
    Ok(Images {
        pixels,
        labels,
        shape: [1, SIDE, SIDE],
        classes: CLASSES,
    })
}
