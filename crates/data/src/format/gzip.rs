//! Reading files that may be gzipped.

use std::fs;
use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{DataError, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The file's bytes, decompressed if they start with the gzip magic `1f 8b`.
///
/// Detecting by content rather than by the `.gz` suffix lets each set ship either way.
pub(crate) fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = fs::read(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    // Multi-member so that concatenated gzip files decode in full, as `zcat` does.
    MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|source| DataError::Gzip {
            path: path.to_owned(),
            source,
        })?;
    Ok(out)
}

/// The file as UTF-8 text, decompressed if gzipped.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_maybe_gzip(path)?).map_err(|err| {
        DataError::format(
            path,
            format!(
                "not UTF-8 text: invalid byte at offset {}",
                err.utf8_error().valid_up_to()
            ),
        )
    })
}
