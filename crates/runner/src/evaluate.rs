//! Scoring a model on the evaluation split: in eval mode (running statistics), in train mode
//! (batch statistics), with PreciseBN's statistics, folded for inference, and on evaluation
//! windows of other lengths.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use normlab_data::shuffled;
use normlab_model::{Model, Network, release_finished_graphs};

use crate::config::GridPoint;
use std::collections::BTreeMap;

use crate::results::{Eval, EvalMode, Score};
use crate::task::Task;

/// Everything one evaluation records: eval mode, train mode where batch statistics make it
/// differ, every evaluation length the config asks for, and at the `last` evaluation the
/// PreciseBN and folded scores it asks for. `step` and `samples` say when it happened.
pub fn evaluate(
    model: &Model,
    point: &GridPoint,
    task: &Task,
    (step, samples, last): (usize, usize, bool),
    device: &Device,
) -> Eval {
    let eval_model = model.valid();
    let mut scores = BTreeMap::new();
    scores.insert(EvalMode::Eval, eval_mode(&eval_model, point, task, device));
    scores.extend(train_mode(model, point, task, device).map(|s| (EvalMode::TrainMode, s)));
    scores.extend(by_length(&eval_model, point, task, device));
    if last {
        scores.extend(precise(model, point, task, device).map(|s| (EvalMode::Precise, s)));
        if point.run.train.folded_eval {
            let folded = eval_mode(&model.fold_batch_norms(), point, task, device);
            scores.insert(EvalMode::Folded, folded);
        }
    }
    Eval {
        step,
        samples,
        scores,
    }
}

/// PreciseBN: eval mode after re-estimating the population statistics of a copy of the model
/// as the equal-weight average over `precise_batches` training batches (shuffled as in
/// training, at the training batch size, the weights fixed; `"epoch"`: one pass over the
/// training set).
fn precise(model: &Model, point: &GridPoint, task: &Task, device: &Device) -> Option<Score> {
    let config = &point.run.train;
    let batches = config.precise_batches?;
    if !point.run.model.norm().uses_batch_statistics() {
        return None;
    }
    // A copy with its own running statistics, averaged afresh over the batches below.
    let copy = model.valid().train().no_grad().for_precise_statistics();
    let train_device = device.clone().autodiff();
    // An epoch no training run reaches: batches in a fresh order, composed as in training.
    let order = task
        .train_batches(config.batch_size, config.batches, config.seed, u64::MAX)
        .ok()?;
    let count = batches.count(order.len());
    for indices in order.into_iter().cycle().take(count) {
        let batch = task.batch(&indices, false, None, &train_device);
        copy.forward(batch.input).ok()?;
        release_finished_graphs(&train_device);
    }
    Some(eval_mode(&copy.valid(), point, task, device))
}

/// Loss and error of the eval copy (`model.valid()`): running statistics for batch norm.
fn eval_mode(eval_model: &Model, point: &GridPoint, task: &Task, device: &Device) -> Score {
    let batch_size = point.run.train.eval_batch_size;
    score(eval_model, task, &task.valid, batch_size, None, device)
        .expect("eval mode accepts any batch")
}

/// For batch norm: loss and error in training mode at the training batch size, that is with
/// the statistics of each evaluation batch, without dropout. `None` when the config turns it
/// off, the model has no batch norm (it would equal eval mode) or a batch cannot be
/// normalized.
fn train_mode(model: &Model, point: &GridPoint, task: &Task, device: &Device) -> Option<Score> {
    let config = &point.run.train;
    if !(config.train_mode_eval && point.run.model.norm().uses_batch_statistics()) {
        return None;
    }
    // A copy with its own running statistics, so evaluating leaves the model as it was, and
    // no dropout, whose masks would draw from the numbers training's come from.
    let copy = model.valid().train().no_grad().without_dropout();
    let train_device = device.clone().autodiff();
    // Batches drawn at random, as in training: an evaluation split stored in class order would
    // give one-class batches, whose statistics erase the class.
    let order = shuffled(&task.valid, config.seed, 0);
    let batch_size = config.train_mode_batch_size.unwrap_or(config.batch_size);
    score(&copy, task, &order, batch_size, None, &train_device)
}

/// Eval mode on windows of each length in `train.eval_lengths` (text sets).
fn by_length(
    eval_model: &Model,
    point: &GridPoint,
    task: &Task,
    device: &Device,
) -> Vec<(EvalMode, Score)> {
    let config = &point.run.train;
    config
        .eval_lengths
        .iter()
        .filter_map(|&length| {
            let indices = task.valid_for_length(length);
            let batch_size = config.eval_batch_size;
            let score = score(eval_model, task, &indices, batch_size, Some(length), device)?;
            Some((EvalMode::Length(length), score))
        })
        .collect()
}

/// Mean cross-entropy and error rate of `model` over `indices`, in batches of `batch_size`;
/// `None` if the model refuses a batch (batch statistics of a single value).
fn score(
    model: &Model,
    task: &Task,
    indices: &[usize],
    batch_size: usize,
    length: Option<usize>,
    device: &Device,
) -> Option<Score> {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let (mut loss_sum, mut wrong, mut count) = (0.0f64, 0usize, 0usize);
    for chunk in eval_chunks(indices, batch_size) {
        let batch = task.batch(chunk, true, length, device);
        let logits = model.forward(batch.input).ok()?;
        let rows = logits.dims()[0];
        let predicted = logits.clone().argmax(1).squeeze_dim::<1>(1);
        wrong += predicted
            .not_equal(batch.targets.clone())
            .int()
            .sum()
            .into_scalar::<i64>() as usize;
        loss_sum += loss_fn.forward(logits, batch.targets).into_scalar::<f64>() * rows as f64;
        count += rows;
        release_finished_graphs(device);
    }
    (count > 0).then(|| Score {
        loss: (loss_sum / count as f64) as f32,
        error: wrong as f32 / count as f32,
    })
}

/// `indices` in chunks of `batch_size`, a last chunk of one folded into the one before: batch
/// statistics of a single example do not exist, and eval mode does not care.
fn eval_chunks(indices: &[usize], batch_size: usize) -> Vec<&[usize]> {
    let mut chunks: Vec<&[usize]> = indices.chunks(batch_size.max(1)).collect();
    if chunks.len() > 1 && chunks.last().is_some_and(|c| c.len() == 1) {
        chunks.pop();
        let start = (chunks.len() - 1) * batch_size;
        *chunks.last_mut().expect("two or more chunks") = &indices[start..];
    }
    chunks
}
