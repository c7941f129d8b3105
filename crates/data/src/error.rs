//! The data crate's errors, each naming the file and the record at fault.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while loading or preparing data.
///
/// Errors about a file name that file, and errors about one line of a text file name the line
/// (1-based), so a message alone is enough to find the problem.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read at all.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// The file starts like gzip but does not decompress (truncated or corrupt).
    #[error("{}: corrupt or truncated gzip data: {source}", path.display())]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// A data set fetched by `scripts/fetch-data.sh` is not there.
    #[error(
        "data set `{set}` has not been fetched (nothing complete in {}); run `{command}` from the repository root",
        path.display()
    )]
    NotFetched {
        /// The set's name, as `scripts/fetch-data.sh` takes it.
        set: &'static str,
        /// The file.
        path: PathBuf,
        /// The command that fetches it.
        command: String,
    },

    /// The first bytes of an IDX file are not `00 00 <dtype> <ndims>`.
    #[error("{}: not an IDX file: magic bytes {found:02x?}, expected [00, 00, 08, ndims]", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// Its first bytes.
        found: Vec<u8>,
    },

    /// An IDX data type other than unsigned bytes (0x08).
    #[error("{}: IDX data type 0x{dtype:02x} is not supported, only 0x08 (unsigned bytes)", path.display())]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The type byte found.
        dtype: u8,
    },

    /// The IDX payload length does not equal the product of the header's dims.
    #[error("{}: IDX dims {dims:?} need {expected} payload bytes but the file has {actual}", path.display())]
    PayloadSize {
        /// The file.
        path: PathBuf,
        /// The dims the header gives.
        dims: Vec<usize>,
        /// Bytes the dims call for.
        expected: usize,
        /// Bytes the file has.
        actual: usize,
    },

    /// The file parsed, but its content does not fit what the loader expects
    /// (wrong dims, label out of range, missing header, ...).
    #[error("{}: {problem}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },

    /// One line of a text file (CSV, `.ts`) is wrong.
    #[error("{}:{line}: {problem}", path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },

    /// A caller-supplied setting is out of range (split fraction, batch size, data width).
    #[error("invalid {what}: {problem}")]
    InvalidArgument {
        /// The setting.
        what: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// A result whose error is a [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    pub(crate) fn format(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn bad_line(
        path: impl Into<PathBuf>,
        line: usize,
        problem: impl Into<String>,
    ) -> Self {
        Self::BadLine {
            path: path.into(),
            line,
            problem: problem.into(),
        }
    }

    pub(crate) fn invalid(what: &'static str, problem: impl Into<String>) -> Self {
        Self::InvalidArgument {
            what,
            problem: problem.into(),
        }
    }
}
