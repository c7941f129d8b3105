use std::env;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// File that `scripts/fetch-data.sh` writes last into a set's folder: without it the set is
/// missing or half-fetched.
const FETCHED_MARKER: &str = ".fetched";

/// Root of all data: `$NORMLAB_DATA` if set and non-empty, else the workspace's `data/` folder.
///
/// Committed sets live in `<root>/embedded/`, fetched ones in `<root>/fetched/<set>/`.
pub fn data_root() -> PathBuf {
    match env::var_os("NORMLAB_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("data"),
    }
}

/// The workspace root, two levels above this crate's manifest, without `..` components so
/// that paths in error messages read cleanly.
fn workspace_root() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest)
}

/// `<data root>/embedded/<name>`: a file or folder committed to the repository.
pub(crate) fn embedded(name: &str) -> PathBuf {
    data_root().join("embedded").join(name)
}

/// Folder of a fetched set, or [`DataError::NotFetched`] naming the command that fetches it.
///
/// `set` is the name `scripts/fetch-data.sh` takes: `mnist`, `fashion-mnist`, `shakespeare`
/// or `japanese-vowels`.
pub fn fetched_dir(set: &'static str) -> Result<PathBuf> {
    let dir = data_root().join("fetched").join(set);
    if dir.join(FETCHED_MARKER).is_file() {
        Ok(dir)
    } else {
        Err(DataError::NotFetched {
            set,
            path: dir,
            command: format!("scripts/fetch-data.sh {set}"),
        })
    }
}
