//! Plain text files as a character language model's corpus.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::format::gzip::read_text;
use crate::text::Text;

/// The `.txt` files of `dir` (raw or gzipped), sorted by name and joined with a blank line
/// (`"\n\n"`) between them.
pub fn read_text_dir(dir: &Path) -> Result<Text> {
    let io_error = |source| DataError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_error)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io_error)?;
    files.retain(|path| path.extension().is_some_and(|ext| ext == "txt"));
    files.sort();
    if files.is_empty() {
        return Err(DataError::format(dir, "no .txt files"));
    }
    let works = files
        .iter()
        .map(|file| read_text(file))
        .collect::<Result<Vec<_>>>()?;
    // The Shakespeare files end without a newline; a blank line keeps one work's last line
    // from running into the next one's title.
    Ok(Text::new(&works.join("\n\n")))
}

/// One UTF-8 text file (raw or gzipped), for the character model.
pub fn read_text_file(path: &Path) -> Result<Text> {
    let text = read_text(path)?;
    if text.is_empty() {
        return Err(DataError::format(path, "empty: no characters to model"));
    }
    Ok(Text::new(&text))
}
