//! Seeded random splits into train, validation and test, and the random streams they use.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::{DataError, Result};

/// One of the official parts of a data set that ships pre-split (MNIST, Fashion-MNIST,
/// JapaneseVowels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The set's training part.
    Train,
    /// The set's test part.
    Test,
}

/// Example indices of a train / validation / test partition, each list sorted ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splits {
    /// Training examples.
    pub train: Vec<usize>,
    /// Validation examples.
    pub valid: Vec<usize>,
    /// Test examples.
    pub test: Vec<usize>,
}

/// What a random stream is for, so that a split and a batch order drawn from the same seed
/// are independent.
#[derive(Clone, Copy)]
pub(crate) enum Stream {
    Split = 1,
    Batch = 2,
    ClassGroups = 3,
}

/// A generator determined by `(seed, stream, index)` and by nothing else; distinct triples give
/// distinct generators because the three are laid side by side in the 32-byte seed.
pub(crate) fn rng(seed: u64, stream: Stream, index: u64) -> StdRng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(stream as u64).to_le_bytes());
    key[16..24].copy_from_slice(&index.to_le_bytes());
    StdRng::from_seed(key)
}

/// Partition `0..n` at random into train, validation and test sets.
///
/// The validation and test sets get `round(n * fraction)` examples each (validation one fewer
/// if both rounded up past `n`), train the rest. The result depends only on
/// `(n, fractions, seed)`.
///
/// Errors if a fraction is not in `[0, 1]` or the two add up to more than 1.
pub fn split_indices(
    n: usize,
    valid_fraction: f64,
    test_fraction: f64,
    seed: u64,
) -> Result<Splits> {
    for (name, fraction) in [
        ("valid_fraction", valid_fraction),
        ("test_fraction", test_fraction),
    ] {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(DataError::invalid(
                "split fraction",
                format!("{name} = {fraction} is not in [0, 1]"),
            ));
        }
    }
    if valid_fraction + test_fraction > 1.0 {
        return Err(DataError::invalid(
            "split fraction",
            format!("valid_fraction {valid_fraction} + test_fraction {test_fraction} exceed 1"),
        ));
    }
    let n_test = (n as f64 * test_fraction).round() as usize;
    // Both rounding up could overshoot `n` by one when the fractions add up to 1.
    let n_valid = ((n as f64 * valid_fraction).round() as usize).min(n - n_test);

    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng(seed, Stream::Split, 0));
    let sorted = |part: &[usize]| {
        let mut part = part.to_vec();
        part.sort_unstable();
        part
    };
    let (test, rest) = order.split_at(n_test);
    let (valid, train) = rest.split_at(n_valid);
    Ok(Splits {
        train: sorted(train),
        valid: sorted(valid),
        test: sorted(test),
    })
}

/// Hold out a validation set from an official training split of `n` examples.
///
/// Same as [`split_indices`] with no test fraction: `test` is empty, because the set's own
/// [`Split::Test`] part is the test set.
pub fn split_train_valid(n: usize, valid_fraction: f64, seed: u64) -> Result<Splits> {
    split_indices(n, valid_fraction, 0.0, seed)
}
