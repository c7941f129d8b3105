//! Helpers shared by the integration tests; each test binary uses a different subset.
#![allow(dead_code)]

use std::io::{self, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use normlab_data::DataError;

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// Assert that the error's message names `path` and contains every one of `needles`.
pub fn assert_message(err: &DataError, path: &Path, needles: &[&str]) {
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "message does not name {}: {message}",
        path.display()
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "message lacks `{needle}`: {message}"
        );
    }
}

/// The loaded value, or `None` after printing how to fetch the set when it is missing, so that
/// tests of fetched sets pass (vacuously, and visibly) on a machine that has not fetched them.
pub fn fetched<T>(result: Result<T, DataError>) -> Option<T> {
    match result {
        Err(err @ DataError::NotFetched { .. }) => {
            // Straight to stderr: the test harness swallows `eprintln!` of passing tests.
            let _ = writeln!(io::stderr(), "skipped: {err}");
            None
        }
        other => Some(other.expect("fetched set present but failed to load")),
    }
}

/// Writes `text` to `file` in a fresh folder, loads it with `load`, and checks that the error is
/// about `line` and says each of `needles`.
pub fn expect_line_error<T: std::fmt::Debug>(
    test: &str,
    file: &str,
    text: &str,
    line: usize,
    needles: &[&str],
    load: impl Fn(&Path) -> Result<T, DataError>,
) {
    let dir = normlab_testkit::scratch(test);
    let path = dir.write(file, text);
    let err = load(&path).unwrap_err();
    assert!(
        matches!(err, DataError::BadLine { line: l, .. } if l == line),
        "expected an error on line {line}: {err:?}"
    );
    assert_message(&err, &path, &[&format!(":{line}:")]);
    assert_message(&err, &path, needles);
}

/// An IDX file of unsigned bytes: magic `00 00 08 ndims`, big-endian dims, payload.
pub fn idx_bytes(dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(payload);
    bytes
}
