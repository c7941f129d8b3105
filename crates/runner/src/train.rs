//! One training run, start to finish: the loop a newcomer reads top to bottom.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use burn::module::{ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use normlab_data::batch_order;
use normlab_model::{Model, probe};
use normlab_norm::NormConfig;

use crate::config::{GridPoint, OptimizerKind, TrainConfig};
use crate::results::{Eval, LengthEval, Probe, RunRecord, Status, StepLoss};
use crate::task::Task;

/// Parameters are drawn lazily from burn's one process-wide RNG. Runs on parallel threads take
/// turns at seeding and drawing, so each run's initial weights depend on its seed alone.
static INIT: Mutex<()> = Mutex::new(());

/// Builds the model of `point` for `task` on `device`, with its weights drawn from its seed.
pub fn build_model(point: &GridPoint, task: &Task, device: &Device) -> Result<Model, String> {
    let _turn = INIT.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(point.run.train.seed);
    let model = point
        .run
        .model
        .init(task.input_shape, task.classes, device)
        .map_err(|e| e.to_string())?;
    model.visit(&mut DrawWeights);
    Ok(model)
}

/// Touches every parameter so its lazy initializer runs now, under the lock.
struct DrawWeights;

impl ModuleVisitor for DrawWeights {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Checks that `point` can train on `task` at all: one forward pass on a training batch. The
/// error, if any, is the layer's own (e.g. batch norm on one value per channel).
pub fn dry_run(point: &GridPoint, task: &Task, device: &Device) -> Result<(), String> {
    let train_device = device.clone().autodiff();
    let model = build_model(point, task, &train_device)?;
    let size = point.run.train.batch_size.min(task.train.len());
    let batch = task.batch(&task.train[..size], false, None, &train_device);
    model
        .forward(batch.input)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Trains `point` on `task` and records everything; `on_step(step, total)` reports progress.
pub fn train(
    point: &GridPoint,
    axes: Vec<(String, String)>,
    task: &Task,
    device: &Device,
    mut on_step: impl FnMut(usize, usize),
) -> RunRecord {
    let started = Instant::now();
    let config = &point.run.train;
    let lr = point.run.lr();
    let train_device = device.clone().autodiff();
    let mut record = RunRecord::new(point, axes);
    let mut model = match build_model(point, task, &train_device) {
        Ok(model) => model,
        Err(reason) => return record.ended(Status::Impossible, reason, started),
    };
    let mut optimizer = optimizer(config);
    let loss_fn = CrossEntropyLossConfig::new().init(&train_device);
    let total_steps = budget_in_steps(config, task.train.len());
    let eval_steps: Vec<usize> = (1..=config.evals)
        .map(|k| (k * total_steps).div_ceil(config.evals))
        .collect();
    let mut step_times: Vec<Duration> = Vec::with_capacity(total_steps);
    let mut smoothed_loss: Option<f32> = None;

    'training: for epoch in 0.. {
        let batches = batch_order(&task.train, config.batch_size, config.seed, epoch)
            .expect("batch size checked when the config was read");
        for indices in batches {
            if record.steps == total_steps {
                break 'training;
            }
            let batch = task.batch(&indices, false, None, &train_device);
            let step_started = Instant::now();

            // Forward, with the probe recording activation statistics on its schedule.
            let probing = config
                .probe
                .as_ref()
                .filter(|p| record.steps.is_multiple_of(p.every.max(1)));
            let logits = match probing {
                Some(p) => {
                    let (logits, sites) = probe::capture(p.units, || model.forward(batch.input));
                    record.probes.push(Probe {
                        step: record.steps,
                        sites,
                    });
                    logits
                }
                None => model.forward(batch.input),
            };
            let logits = match logits {
                Ok(logits) => logits,
                Err(e) => return record.ended(Status::Impossible, e.to_string(), started),
            };
            let loss = loss_fn.forward(logits, batch.targets);
            let loss_value = loss.clone().into_scalar::<f32>();

            // A run whose loss is not finite or has exploded is over: record it and go on.
            let first_loss = record.losses.first().map_or(loss_value, |l| l.loss);
            let smoothed = smoothed_loss.map_or(loss_value, |s| 0.9 * s + 0.1 * loss_value);
            smoothed_loss = Some(smoothed);
            if !loss_value.is_finite() || smoothed > config.divergence_factor as f32 * first_loss {
                let reason = format!(
                    "training loss {loss_value} at step {} (first loss {first_loss})",
                    record.steps + 1
                );
                return record.ended(Status::Diverged, reason, started);
            }

            // Backward on the loss plus the weight penalties; clip; update.
            let objective = loss + weight_penalty(&model, config.l1, config.l2, &train_device);
            let mut grads = GradientsParams::from_grads(objective.backward(), &model);
            if let Some(max_norm) = config.grad_clip {
                clip_global_norm(&model, &mut grads, max_norm);
            }
            model = optimizer.step(lr, model, grads);
            step_times.push(step_started.elapsed());

            record.steps += 1;
            record.samples += indices.len();
            record.losses.push(StepLoss {
                step: record.steps,
                samples: record.samples,
                loss: loss_value,
            });
            if eval_steps.contains(&record.steps) {
                record
                    .evals
                    .push(evaluate(&model, point, task, &record, device));
            }
            on_step(record.steps, total_steps);
        }
    }
    step_times.sort();
    record.step_seconds = step_times
        .get(step_times.len() / 2)
        .map_or(0.0, Duration::as_secs_f64);
    record.wall_seconds = started.elapsed().as_secs_f64();
    record
}

impl RunRecord {
    /// The record of `point` before it trains.
    pub fn new(point: &GridPoint, axes: Vec<(String, String)>) -> Self {
        Self {
            id: point.id.clone(),
            axes,
            status: Status::Finished,
            reason: None,
            config: point.run.clone(),
            lr: point.run.lr(),
            losses: Vec::new(),
            evals: Vec::new(),
            probes: Vec::new(),
            steps: 0,
            samples: 0,
            step_seconds: 0.0,
            wall_seconds: 0.0,
        }
    }

    fn ended(mut self, status: Status, reason: String, started: Instant) -> Self {
        self.status = status;
        self.reason = Some(reason);
        self.wall_seconds = started.elapsed().as_secs_f64();
        self
    }
}

fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    match config.optimizer {
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum((config.momentum > 0.0).then_some(MomentumConfig {
                momentum: config.momentum,
                dampening: 0.0,
                nesterov: false,
            }))
            .init(),
        OptimizerKind::Adam => AdamConfig::new().with_epsilon(1e-8).init(),
    }
}

/// Steps the budget allows: whole batches, at least one.
fn budget_in_steps(config: &TrainConfig, train_examples: usize) -> usize {
    let samples = match (config.epochs, config.samples) {
        (Some(epochs), _) => (epochs * train_examples as f64).round() as usize,
        (None, Some(samples)) => samples,
        (None, None) => unreachable!("a budget is checked when the config is read"),
    };
    samples.div_ceil(config.batch_size).max(1)
}

/// `l1 * sum |w| + l2 / 2 * sum w^2` over the weights (parameters of rank 2 or more: linear and
/// conv kernels, not biases or norm parameters).
fn weight_penalty(model: &Model, l1: f64, l2: f64, device: &Device) -> Tensor<1> {
    struct Penalty {
        l1: f64,
        l2: f64,
        total: Tensor<1>,
    }
    impl ModuleVisitor for Penalty {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D < 2 || !param.is_require_grad() {
                return;
            }
            let w = param.val();
            if self.l1 > 0.0 {
                self.total = self.total.clone() + w.clone().abs().sum() * self.l1;
            }
            if self.l2 > 0.0 {
                self.total = self.total.clone() + w.square().sum() * (self.l2 / 2.0);
            }
        }
    }
    let mut penalty = Penalty {
        l1,
        l2,
        total: Tensor::zeros([1], device),
    };
    if l1 > 0.0 || l2 > 0.0 {
        model.visit(&mut penalty);
    }
    penalty.total
}

/// Rescales all gradients together so their joint L2 norm is at most `max_norm` (burn's own
/// clipping works per parameter tensor).
fn clip_global_norm(model: &Model, grads: &mut GradientsParams, max_norm: f64) {
    struct Norm<'a> {
        grads: &'a mut GradientsParams,
        squared: f64,
        scale: Option<f64>,
    }
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            match self.scale {
                None => {
                    if let Some(g) = self.grads.get::<D>(param.id) {
                        self.squared += g.square().sum().into_scalar::<f64>();
                    }
                }
                Some(scale) => {
                    if let Some(g) = self.grads.remove::<D>(param.id) {
                        self.grads.register(param.id, g * scale);
                    }
                }
            }
        }
    }
    let mut norm = Norm {
        grads,
        squared: 0.0,
        scale: None,
    };
    model.visit(&mut norm);
    let total = norm.squared.sqrt();
    if total > max_norm {
        norm.scale = Some(max_norm / (total + 1e-6));
        model.visit(&mut norm);
    }
}

/// Loss and error on the evaluation split: in eval mode (running statistics), and for batch
/// norm also in training mode at the training batch size (batch statistics).
fn evaluate(
    model: &Model,
    point: &GridPoint,
    task: &Task,
    record: &RunRecord,
    device: &Device,
) -> Eval {
    let config = &point.run.train;
    let eval_model = model.valid();
    let (valid_loss, valid_error) = score(
        &eval_model,
        task,
        &task.valid,
        config.eval_batch_size,
        None,
        device,
    )
    .expect("eval mode accepts any batch");
    let train_mode = (config.train_mode_eval && has_batch_norm(point.run.model.norm()))
        .then(|| {
            // A copy with its own running statistics, so evaluating leaves the model as it was.
            let copy = model.valid().train().no_grad();
            let train_device = device.clone().autodiff();
            // Batches drawn at random, as in training: an evaluation split stored in class order
            // would give one-class batches, whose statistics erase the class.
            let shuffled = batch_order(&task.valid, task.valid.len(), config.seed, 0)
                .map(|mut order| order.swap_remove(0))
                .unwrap_or_else(|_| task.valid.clone());
            score(
                &copy,
                task,
                &shuffled,
                config.batch_size,
                None,
                &train_device,
            )
        })
        .flatten();
    let by_length = config
        .eval_lengths
        .iter()
        .filter_map(|&length| {
            let indices = task.valid_for_length(length);
            let (loss, error) = score(
                &eval_model,
                task,
                &indices,
                config.eval_batch_size,
                Some(length),
                device,
            )?;
            Some(LengthEval {
                length,
                loss,
                error,
            })
        })
        .collect();
    Eval {
        step: record.steps,
        samples: record.samples,
        valid_loss,
        valid_error,
        train_mode_loss: train_mode.map(|(loss, _)| loss),
        train_mode_error: train_mode.map(|(_, error)| error),
        by_length,
    }
}

fn has_batch_norm(norm: &NormConfig) -> bool {
    matches!(norm, NormConfig::Batch(_))
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
) -> Option<(f32, f32)> {
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
    }
    (count > 0).then(|| {
        (
            (loss_sum / count as f64) as f32,
            wrong as f32 / count as f32,
        )
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
