//! PreciseBN (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm"): after training, replace the
//! running statistics, an exponential moving average dominated by the last few batches of a
//! moving model, by an equal-weight average over many batches with the weights fixed.

use std::cell::RefCell;
use std::collections::HashSet;

thread_local! {
    /// The running statistics already restarted in the session running on this thread.
    static SESSION: RefCell<Option<HashSet<usize>>> = const { RefCell::new(None) };
}

/// Re-estimates the population statistics of every batch norm `forward` runs through, as the
/// equal-weight average of the per-batch mean and variance (the variance unbiased unless the
/// layer says otherwise) over the given `batches`, and returns how many batches it used.
///
/// `forward` must run the model *in training mode* (on an autodiff device, the layers' training
/// flag on, as during training) with fixed weights: call it with your training batches, do not
/// step an optimizer. Each layer's running statistics start afresh at the first batch that
/// reaches it and hold the average of all the batches that did when this returns; its momentum
/// is untouched for later training. Ghost batch norm counts every virtual batch as a batch;
/// per-step statistics average each step over the batches that reached it. Batch
/// renormalization averages its moving standard deviation; EvoNorm-B0 its variance.
///
/// This is the "momentum = 1/k" estimator of the BN paper and of the first PreciseBN
/// implementations; recent fvcore pools the samples into one population variance instead, which
/// differs by the spread of the per-batch means.
///
/// ```ignore
/// let model = model.valid().train(); // a copy with its own statistics
/// normlab_norm::precise_statistics(batches.take(200), |batch| {
///     let _ = model.forward(batch.input);
/// });
/// let eval = model.valid();
/// ```
pub fn precise_statistics<T>(
    batches: impl IntoIterator<Item = T>,
    mut forward: impl FnMut(T),
) -> usize {
    let previous = SESSION.with(|s| s.borrow_mut().replace(HashSet::new()));
    let mut used = 0;
    for batch in batches {
        forward(batch);
        used += 1;
    }
    SESSION.with(|s| *s.borrow_mut() = previous);
    used
}

/// For the running statistics with `key`: `None` outside a PreciseBN session; in one, whether
/// this is their first fold of the session (their counts restart at zero).
pub(crate) fn restarts(key: usize) -> Option<bool> {
    SESSION.with(|s| s.borrow_mut().as_mut().map(|seen| seen.insert(key)))
}
