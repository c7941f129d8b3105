//! Data sets for normlab, as plain vectors: the training runner turns them into tensors.
//!
//! - Committed, no network: [`digits`] (8x8 images) and [`embedded_shakespeare`] (eight plays).
//! - Fetched on demand by `scripts/fetch-data.sh <set>` into `data/fetched/<set>/`:
//!   [`mnist`], [`fashion_mnist`], [`japanese_vowels`], [`shakespeare_full`]. When a set is
//!   missing its loader returns [`DataError::NotFetched`], which names the command to run.
//! - Preparing: [`split_indices`] / [`split_train_valid`] for deterministic splits,
//!   [`batch_order`] for per-epoch shuffled batches, [`pad_sequences`] for variable-length
//!   series, [`Scaler`] for input scaling fitted on training data.
//!
//! Loaders keep values raw (pixels 0..16 or 0..255). Nothing here panics on bad files: every
//! error names the file, and the line where there is one.

mod batch;
mod digits;
mod error;
mod file;
mod idx;
mod images;
mod paths;
mod scale;
mod sequences;
mod split;
mod text;
mod ts;

pub use batch::{PaddedBatch, batch_order, pad_sequences};
pub use digits::{digits, digits_from};
pub use error::{DataError, Result};
pub use idx::{Idx, read_idx};
pub use images::{Images, fashion_mnist, images_from_idx, mnist};
pub use paths::{data_root, fetched_dir};
pub use scale::{ScaleKind, ScaleScope, Scaler, ScalerConfig};
pub use sequences::{Sequences, japanese_vowels};
pub use split::{Split, Splits, split_indices, split_train_valid};
pub use text::{Text, embedded_shakespeare, read_text_dir, shakespeare_full};
pub use ts::read_ts;
