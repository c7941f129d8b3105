//! One training run, start to finish: the loop a newcomer reads top to bottom.

use std::time::{Duration, Instant};

use burn::module::{ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use normlab_model::norm_time::{self, NormTime};
use normlab_model::{Model, gradient_flow, probe};
use normlab_norm::composed_only;

use crate::config::{GridPoint, NormKernels, OptimizerKind, TrainConfig};
use crate::evaluate::evaluate;
use crate::model_init::build_model;
use crate::results::{GradientFlow, LossWindows, NormSeconds, Probe, RunRecord, Status};
use crate::task::Task;

/// Trains `point` on `task` and records everything; `on_step(step, total)` reports progress.
pub fn train(
    point: &GridPoint,
    task: &Task,
    device: &Device,
    on_step: impl FnMut(usize, usize),
) -> RunRecord {
    let config = &point.run.train;
    let run = || match config.time_norms {
        true => norm_time::measure(|| train_loop(point, task, device, on_step)).0,
        false => train_loop(point, task, device, on_step),
    };
    match config.norm_kernels {
        NormKernels::Fastest => run(),
        NormKernels::Composed => composed_only(run),
    }
}

/// The run itself, read top to bottom; [`train`] sets the norm kernels and timing around it.
fn train_loop(
    point: &GridPoint,
    task: &Task,
    device: &Device,
    mut on_step: impl FnMut(usize, usize),
) -> RunRecord {
    let started = Instant::now();
    let config = &point.run.train;
    let lr = point.run.lr();
    let train_device = device.clone().autodiff();
    let mut record = RunRecord::new(point);
    let mut model = match build_model(point, task, &train_device) {
        Ok(model) => model,
        Err(e) => return record.ended(Status::Impossible, e.to_string(), started),
    };
    if config.gradient_flow {
        // On a twin of the model, so that the measurement's forward pass leaves the running
        // statistics of the one that trains untouched.
        let twin = build_model(point, task, &train_device);
        record.gradient_flow.extend(
            twin.ok()
                .and_then(|twin| measure_gradient_flow(&twin, 0, point, task, &train_device)),
        );
    }
    let mut optimizer = optimizer(config);
    let loss_fn = CrossEntropyLossConfig::new().init(&train_device);
    let total_steps = budget_in_steps(config, task.train.len());
    let eval_steps: Vec<usize> = (1..=config.evals)
        .map(|k| (k * total_steps).div_ceil(config.evals))
        .collect();
    let mut step_times: Vec<Duration> = Vec::with_capacity(total_steps);
    let mut norm_times: Vec<NormTime> = Vec::new();
    let mut loss_windows = LossWindows::for_run(total_steps);
    let mut first_loss: Option<f32> = None;
    let mut smoothed_loss: Option<f32> = None;

    'training: for epoch in 0.. {
        let batches =
            match task.train_batches(config.batch_size, config.batches, config.seed, epoch) {
                Ok(batches) if !batches.is_empty() => batches,
                Ok(_) => {
                    let reason = "the training split makes no batch of this kind".to_string();
                    return record.ended(Status::Impossible, reason, started);
                }
                Err(e) => return record.ended(Status::Impossible, e.to_string(), started),
            };
        for indices in batches {
            if record.steps == total_steps {
                break 'training;
            }
            let batch = task.batch(&indices, false, None, &train_device);
            let step_started = Instant::now();
            norm_time::lap(); // The evaluations' norm calls are not the step's.

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
            let first_loss = *first_loss.get_or_insert(loss_value);
            let smoothed = smoothed_loss.map_or(loss_value, |s| 0.9 * s + 0.1 * loss_value);
            smoothed_loss = Some(smoothed);
            if !loss_value.is_finite() || smoothed > config.divergence_factor as f32 * first_loss {
                let reason = format!(
                    "training loss {loss_value} at step {} (first loss {first_loss})",
                    record.steps + 1
                );
                record.losses.extend(loss_windows.close());
                return record.ended(Status::Diverged, reason, started);
            }

            // Backward on the loss plus the weight penalties; clip; update.
            let objective = loss + weight_penalty(&model, config.l1, config.l2, &train_device);
            let mut grads = GradientsParams::from_grads(objective.backward(), &model);
            if let Some(max_norm) = config.grad_clip {
                clip_global_norm(&model, &mut grads, max_norm);
            }
            let rate = config
                .lr_schedule
                .rate(lr, record.steps, total_steps, config.warmup);
            model = optimizer.step(rate, model, grads);
            step_times.push(step_started.elapsed());
            if config.time_norms {
                norm_times.push(norm_time::lap());
            }

            record.steps += 1;
            record.samples += indices.len();
            let window = loss_windows.push(record.steps, record.samples, loss_value);
            record.losses.extend(window);
            if eval_steps.contains(&record.steps) {
                let when = (record.steps, record.samples, record.steps == total_steps);
                let eval = evaluate(&model, point, task, when, device);
                record.evals.push(eval);
            }
            on_step(record.steps, total_steps);
        }
    }
    record.losses.extend(loss_windows.close());
    if config.gradient_flow {
        let after = measure_gradient_flow(&model, record.steps, point, task, &train_device);
        record.gradient_flow.extend(after);
    }
    record.step_seconds = median(step_times.iter().map(Duration::as_secs_f64));
    // A model without norm layers has nothing to time.
    record.norm_seconds = norm_times.iter().any(|t| t.calls > 0).then(|| NormSeconds {
        forward: median(norm_times.iter().map(|t| t.forward.as_secs_f64())),
        backward: median(norm_times.iter().map(|t| t.backward.as_secs_f64())),
        total: median(
            norm_times
                .iter()
                .map(|t| (t.forward + t.backward).as_secs_f64()),
        ),
    });
    record.wall_seconds = started.elapsed().as_secs_f64();
    record
}

/// The upper median; 0 for no values.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Recurrent BN's Figure 1: `||dLoss/dh_t||` for every step `t`, on the first training batch.
fn measure_gradient_flow(
    model: &Model,
    step: usize,
    point: &GridPoint,
    task: &Task,
    device: &Device,
) -> Option<GradientFlow> {
    let config = &point.run.train;
    let batches = task.train_batches(config.batch_size, config.batches, config.seed, 0);
    let indices = batches.ok()?.into_iter().next()?;
    let batch = task.batch(&indices, false, None, device);
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let norms = gradient_flow::measure(|| {
        let logits = model.forward(batch.input)?;
        Ok::<_, normlab_model::ModelError>(loss_fn.forward(logits, batch.targets))
    });
    Some(GradientFlow {
        step,
        norms: norms.ok()?,
    })
}

fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let decay =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    match config.optimizer {
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum((config.momentum > 0.0).then_some(MomentumConfig {
                momentum: config.momentum,
                dampening: 0.0,
                nesterov: false,
            }))
            .with_weight_decay(decay)
            .init(),
        OptimizerKind::Adam => AdamConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(decay)
            .init(),
    }
}

/// Steps the budget allows: whole batches, at least one.
pub(crate) fn budget_in_steps(config: &TrainConfig, train_examples: usize) -> usize {
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
