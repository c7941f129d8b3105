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
    if batch_size == 0 {
        return Err(DataError::invalid("batch size", "must be at least 1"));
    }
    let order = shuffled(indices, seed, epoch);
    Ok(order.chunks(batch_size).map(<[usize]>::to_vec).collect())
}

/// Batches of `batch_size` that each hold examples of two classes only, half of each: the
/// non-i.i.d. batches under which batch norm's statistics stop describing the data (Ioffe 2017,
/// section 4.3). `label(i)` is the class of example `i`.
///
/// Each class's examples are shuffled and cut into halves of `batch_size / 2`; the halves are
/// shuffled and each is paired with the next half of another class. Halves left without a
/// partner, and the remainder of each class, are left out of this epoch. Like
/// [`batch_order`], the batches depend only on `(indices, labels, seed, epoch)`. Errors if
/// `batch_size` is below 2.
pub fn class_pair_batches(
    indices: &[usize],
    label: impl Fn(usize) -> usize,
    batch_size: usize,
    seed: u64,
    epoch: u64,
) -> Result<Vec<Vec<usize>>> {
    if batch_size < 2 {
        return Err(DataError::invalid(
            "batch size",
            "class-pair batches need at least 2 examples",
        ));
    }
    let half = batch_size / 2;
    let mut by_class: Vec<Vec<usize>> = Vec::new();
    for i in shuffled(indices, seed, epoch) {
        let class = label(i);
        if by_class.len() <= class {
            by_class.resize_with(class + 1, Vec::new);
        }
        by_class[class].push(i);
    }
    let mut halves: Vec<(usize, &[usize])> = by_class
        .iter()
        .enumerate()
        .flat_map(|(class, examples)| examples.chunks_exact(half).map(move |h| (class, h)))
        .collect();
    halves.shuffle(&mut rng(seed, Stream::ClassPairs, epoch));
    let mut batches = Vec::with_capacity(halves.len() / 2);
    while let Some((class, first)) = halves.pop() {
        let Some(partner) = halves.iter().rposition(|&(other, _)| other != class) else {
            break;
        };
        let (_, second) = halves.remove(partner);
        let mut batch = first.to_vec();
        batch.extend_from_slice(second);
        batches.push(batch);
    }
    Ok(batches)
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
