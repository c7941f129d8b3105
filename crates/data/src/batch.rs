//! Training examples cut into batches: shuffled, grouped by class, and padded for sequences.

use rand::seq::SliceRandom;

use crate::error::{DataError, Result};
use crate::sequences::Sequences;
use crate::split::{Stream, rng};

/// Shuffle `indices` and cut them into batches of `batch_size`; the last batch keeps the
/// remainder and may be smaller.
///
/// The order depends only on `(indices, seed, epoch)`, so a run can be replayed and each
/// epoch sees a different order. Errors if `batch_size` is 0.
pub fn batch_order(
    indices: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: u64,
) -> Result<Vec<Vec<usize>>> {
    check_batch_size(batch_size > 0, "must be at least 1")?;
    let order = shuffled(indices, seed, epoch);
    Ok(order.chunks(batch_size).map(<[usize]>::to_vec).collect())
}

/// How [`class_batches`] groups the examples of each class into a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassMix {
    /// Batches of `batch_size / 2` pairs, the two examples of each pair from one class: the
    /// non-i.i.d. minibatches of Ioffe (2017, section 4.3: 16 pairs per batch of 32), which
    /// leave the class mix of a batch random but make its examples correlated. Each class's
    /// examples are cut into pairs; the pairs of all classes are shuffled together and cut into
    /// batches, so a pair's class is drawn with the classes' frequencies. The last batch keeps
    /// the remainder; an unpaired example of each class is left out of the epoch. Needs an even
    /// `batch_size` of at least 2.
    SameClassPairs,
    /// Batches that each hold examples of two classes only, half of each: a stress test harsher
    /// than the paper's design, under which every norm's optimizer suffers, not only batch
    /// norm's statistics. Each class's examples are cut into halves of `batch_size / 2`; the
    /// halves are shuffled and each is paired with the next half of another class. Halves left
    /// without a partner, and the remainder of each class, are left out of the epoch. Needs a
    /// `batch_size` of at least 2.
    TwoClasses,
}

/// Batches of `batch_size` made of same-class groups as `mix` says, from `indices` shuffled
/// per class; `label(i)` is the class of example `i`. Like [`batch_order`], the batches depend
/// only on `(indices, labels, seed, epoch)`. Errors if `batch_size` does not suit `mix`.
pub fn class_batches(
    mix: ClassMix,
    indices: &[usize],
    label: impl Fn(usize) -> usize,
    batch_size: usize,
    seed: u64,
    epoch: u64,
) -> Result<Vec<Vec<usize>>> {
    let (fits, problem, group) = match mix {
        ClassMix::SameClassPairs => (
            batch_size >= 2 && batch_size.is_multiple_of(2),
            "batches of same-class pairs need an even size",
            2,
        ),
        ClassMix::TwoClasses => (
            batch_size >= 2,
            "two-class batches need at least 2 examples",
            batch_size / 2,
        ),
    };
    check_batch_size(fits, problem)?;
    let groups = same_class_groups(indices, &label, group, seed, epoch);
    Ok(match mix {
        ClassMix::SameClassPairs => groups
            .chunks(batch_size / 2)
            .map(|pairs| {
                pairs
                    .iter()
                    .flat_map(|(_, pair)| pair.iter().copied())
                    .collect()
            })
            .collect(),
        ClassMix::TwoClasses => halves_of_two_classes(groups),
    })
}

/// Each half (the last first) joined with the last remaining half of another class.
fn halves_of_two_classes(mut halves: Vec<(usize, Vec<usize>)>) -> Vec<Vec<usize>> {
    let mut batches = Vec::with_capacity(halves.len() / 2);
    while let Some((class, first)) = halves.pop() {
        let Some(partner) = halves.iter().rposition(|&(other, _)| other != class) else {
            break;
        };
        let (_, second) = halves.remove(partner);
        let mut batch = first;
        batch.extend(second);
        batches.push(batch);
    }
    batches
}

/// An invalid-argument error on the batch size saying `problem`, unless it is `ok`.
fn check_batch_size(ok: bool, problem: &'static str) -> Result<()> {
    match ok {
        true => Ok(()),
        false => Err(DataError::invalid("batch size", problem)),
    }
}

/// The examples of each class, shuffled and cut into groups of `size` (each class's remainder
/// left out), with the groups of all classes shuffled together; each group with its class.
fn same_class_groups(
    indices: &[usize],
    label: &impl Fn(usize) -> usize,
    size: usize,
    seed: u64,
    epoch: u64,
) -> Vec<(usize, Vec<usize>)> {
    let mut by_class: Vec<Vec<usize>> = Vec::new();
    for i in shuffled(indices, seed, epoch) {
        let class = label(i);
        if by_class.len() <= class {
            by_class.resize_with(class + 1, Vec::new);
        }
        by_class[class].push(i);
    }
    let mut groups: Vec<(usize, Vec<usize>)> = by_class
        .iter()
        .enumerate()
        .flat_map(|(class, examples)| {
            examples
                .chunks_exact(size)
                .map(move |group| (class, group.to_vec()))
        })
        .collect();
    groups.shuffle(&mut rng(seed, Stream::ClassGroups, epoch));
    groups
}

/// `indices` in the order epoch `epoch` of [`batch_order`] visits them: a shuffle that depends
/// only on `(indices, seed, epoch)`.
pub fn shuffled(indices: &[usize], seed: u64, epoch: u64) -> Vec<usize> {
    let mut order = indices.to_vec();
    order.shuffle(&mut rng(seed, Stream::Batch, epoch));
    order
}

/// Variable-length sequences padded with zeros to the longest one in the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct PaddedBatch {
    /// `N * steps * features` values, shape `[N, T, F]`, zeros after each sequence's end.
    pub values: Vec<f32>,
    /// `N * steps` flags, shape `[N, T]`: `true` at real steps, `false` at padding.
    pub mask: Vec<bool>,
    /// Real length of each sequence, in steps.
    pub lengths: Vec<usize>,
    /// `T`, the longest length in the batch.
    pub steps: usize,
    /// `F`, values per step.
    pub features: usize,
    /// Class of each sequence.
    pub labels: Vec<usize>,
}

/// Gather the cases `indices` of `sequences` into one zero-padded batch, in the given order.
///
/// Scale the sequences before padding, so that padding stays exactly zero.
///
/// # Panics
///
/// If an index is out of range, like slice indexing.
pub fn pad_sequences(sequences: &Sequences, indices: &[usize]) -> PaddedBatch {
    let features = sequences.features;
    let lengths: Vec<usize> = indices.iter().map(|&i| sequences.steps(i)).collect();
    let steps = lengths.iter().copied().max().unwrap_or(0);

    let mut values = vec![0.0; indices.len() * steps * features];
    let mut mask = vec![false; indices.len() * steps];
    for (row, (&i, &len)) in indices.iter().zip(&lengths).enumerate() {
        let start = row * steps * features;
        values[start..start + len * features].copy_from_slice(&sequences.values[i]);
        mask[row * steps..row * steps + len].fill(true);
    }
    PaddedBatch {
        values,
        mask,
        lengths,
        steps,
        features,
        labels: indices.iter().map(|&i| sequences.labels[i]).collect(),
    }
}
