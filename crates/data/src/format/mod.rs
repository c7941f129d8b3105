//! File formats: bytes in, the containers of this crate out. Every error names the file, and the
//! line or record where there is one.

pub(crate) mod csv_table;
pub(crate) mod digits_csv;
pub(crate) mod gzip;
pub(crate) mod idx;
pub(crate) mod plain_text;
pub(crate) mod ts;

use std::path::Path;

use crate::error::{DataError, Result};

/// A CSV record of `path` and its 1-based line, or an error naming the file and the line.
pub(crate) fn csv_record(
    path: &Path,
    record: std::result::Result<csv::StringRecord, csv::Error>,
) -> Result<(csv::StringRecord, usize)> {
    let record = record.map_err(|err| match err.position() {
        Some(pos) => {
            DataError::bad_line(path, pos.line() as usize, format!("unreadable CSV: {err}"))
        }
        None => DataError::format(path, format!("unreadable CSV: {err}")),
    })?;
    let line = record.position().map_or(0, |pos| pos.line() as usize);
    Ok((record, line))
}
