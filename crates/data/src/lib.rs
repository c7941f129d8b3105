//! Data sets for normlab, as plain vectors: the training runner turns them into tensors.
//!
//! The named sets are methods of a [`DataRoot`], the folder they live in:
//! - Committed, no network: [`digits`](DataRoot::digits) (8x8 images) and
//!   [`embedded_shakespeare`](DataRoot::embedded_shakespeare) (eight plays).
//! - Fetched on demand by `scripts/fetch-data.sh <set>` into `data/fetched/<set>/`:
//!   [`mnist`](DataRoot::mnist), [`fashion_mnist`](DataRoot::fashion_mnist),
//!   [`japanese_vowels`](DataRoot::japanese_vowels), [`shakespeare_full`](DataRoot::shakespeare_full).
//!   When a set is missing its loader returns [`DataError::NotFetched`], which names the
//!   command to run.
//! - Preparing: [`split_indices`] / [`split_train_valid`] for deterministic splits,
//!   [`batch_order`] for per-epoch shuffled batches, [`pad_sequences`] for variable-length
//!   series, [`Scaler`] for input scaling fitted on training data.
//!
//! Loaders keep values raw (pixels 0..16 or 0..255). Nothing here panics on bad files: every
//! error names the file, and the line where there is one.

#![warn(missing_docs)]

mod batch;
mod error;
mod format;
mod images;
mod scale;
mod sequences;
mod sets;
mod split;
mod text;

pub use batch::{ClassMix, PaddedBatch, batch_order, class_batches, pad_sequences, shuffled};
pub use error::{DataError, Result};
pub use format::csv_table::{MAX_CLASSES, images_from_csv};
pub use format::digits_csv::digits_from;
pub use format::idx::{Idx, images_from_idx, read_idx};
pub use format::plain_text::{read_text_dir, read_text_file};
pub use format::ts::read_ts;
pub use images::Images;
pub use scale::{ScaleKind, ScaleScope, Scaler, ScalerConfig};
pub use sequences::Sequences;
pub use sets::{DataRoot, find_data_root};
pub use split::{Split, Splits, split_indices, split_train_valid};
pub use text::Text;
