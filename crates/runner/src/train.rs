//! One training run, start to finish: `train_loop` is the loop a newcomer reads top to bottom,
//! with what it measures besides the loss passed in as [`Instrumentation`].

use std::time::{Duration, Instant};

use burn::module::{ModuleVisitor, Param};
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use normlab_model::norm_time::{NormTime, NormTimer};
use normlab_model::subnormals::{FlushingPool, Subnormals};
use normlab_model::{Input, InputShape, Instruments, Model, ModelConfig, Network};
use normlab_optim::AdamConfig;

use crate::config::{Experiment, GridPoint, OptimizerKind, ProbeConfig, TrainConfig};
use crate::error::RunnerError;
use crate::evaluate::evaluate;
use crate::model_init::build_model;
use crate::results::{GradientFlow, LossWindows, NormSeconds, Probe, RunRecord, Status};
use crate::task::{Batch, Task};

/// What a run measures besides its training loss and its evaluations.
#[derive(Debug, Clone, Default)]
pub struct Instrumentation {
    /// Activation statistics at every norm site, every `every` steps.
    pub probe: Option<ProbeConfig>,
    /// Times the norm layers inside every training step, forward and backward.
    pub norm_timer: Option<NormTimer>,
    /// The loss's gradient at every hidden state of the recurrence, on the first training
    /// batch, at initialization and after training.
    pub gradient_flow: bool,
}

impl Instrumentation {
    /// What `config` asks a run to measure.
    pub fn of(config: &TrainConfig) -> Self {
        Self {
            probe: config.probe.clone(),
            norm_timer: config.time_norms.then(NormTimer::new),
            gradient_flow: config.gradient_flow,
        }
    }

    /// The instruments of the forward pass of step `step`: the timer, and the probe on its
    /// schedule.
    fn for_step(&self, step: usize) -> Instruments {
        let mut instruments = Instruments::none();
        if let Some(timer) = &self.norm_timer {
            instruments = instruments.timing(timer);
        }
        match &self.probe {
            Some(probe) if step.is_multiple_of(probe.every.max(1)) => {
                instruments.probing(probe.units)
            }
            _ => instruments,
        }
    }
}

/// The threads one job of a sweep trains its runs on: for the runs whose config says
/// `subnormals = "flush"`, a [`FlushingPool`] started once for all of them; for convolutional
/// runs, when the job shares the machine with other jobs, a pool of the job's share of the
/// threads; for the rest, the caller's thread and rayon's global pool.
///
/// Why convolutional runs alone: jobs that share rayon's global pool hand their parallel work to
/// the same threads and wait on each other's. A convolutional run keeps every thread busy with
/// its own convolutions, and loses more by the waiting than it gains from the other job's idle
/// moments. Dense runs do the opposite: their matmuls use the second core while the other job is
/// between its own. Measured in one sitting on the project's 2-core Xeon, two jobs side by side:
/// two 100-step ResNet runs took 26.9-28.4 s on the shared pool of 2 threads and 21.7-22.1 s
/// on a thread each; `covariate_shift`'s MLP grid 38.8 s shared and 52.6 s on a thread each;
/// recurrent grids about the same either way (`gradient_flow_rows`' RNN 18.4 and 16.5 s, small
/// LSTM grids within 3%), so they stay on the shared pool. The numbers are the same on any
/// number of threads, as every kernel cuts its work by shape alone (the test
/// `a_run_gives_the_same_numbers_on_one_thread_as_on_three`).
pub struct TrainingThreads {
    convolutional: Option<rayon::ThreadPool>,
    flushing: Option<FlushingPool>,
}

impl TrainingThreads {
    /// The threads of one of `jobs` jobs that train `experiment`'s runs side by side; a
    /// convolutional run gets an equal share of rayon's threads (at least one). Starts the
    /// flushing pool when any run of the grid flushes, so that a machine that cannot flush stops
    /// the sweep before it trains.
    pub fn for_job(experiment: &Experiment, jobs: usize) -> Result<Self, RunnerError> {
        let flushes = |point: &GridPoint| point.run.train.subnormals == Subnormals::Flush;
        let flushing = match experiment.points.iter().any(flushes) {
            true => Some(
                FlushingPool::new().map_err(|source| RunnerError::Subnormals {
                    experiment: experiment.path.clone(),
                    source,
                })?,
            ),
            false => None,
        };
        let all = rayon::current_num_threads();
        let share = (all / jobs.max(1)).max(1);
        let convolutional = match share < all && experiment.points.iter().any(is_convolutional) {
            true => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(share)
                    .build()
                    .map_err(RunnerError::Threads)?,
            ),
            false => None,
        };
        Ok(Self {
            convolutional,
            flushing,
        })
    }

    /// [`train`]s `point`, a point of the experiment these threads were started for, on the
    /// threads its config asks for.
    pub fn train(
        &self,
        point: &GridPoint,
        task: &Task,
        device: &Device,
        on_step: impl FnMut(usize, usize) + Send,
    ) -> RunRecord {
        self.run(point, || train(point, task, device, on_step))
    }

    /// Runs `work` for `point` on the threads its config asks for.
    fn run<R: Send>(&self, point: &GridPoint, work: impl FnOnce() -> R + Send) -> R {
        match (&self.flushing, &self.convolutional) {
            (Some(pool), _) if point.run.train.subnormals == Subnormals::Flush => {
                pool.install(work)
            }
            (_, Some(pool)) if is_convolutional(point) => pool.install(work),
            _ => work(),
        }
    }
}

/// A run of a convolutional model, plain or residual.
fn is_convolutional(point: &GridPoint) -> bool {
    matches!(
        point.run.model,
        ModelConfig::Cnn(_) | ModelConfig::Resnet(_)
    )
}

/// Trains `point` on `task` with what its config asks to measure and records everything;
/// `on_step(step, total)` reports progress. It runs on the calling thread: see
/// [`TrainingThreads`] for the runs that flush subnormal floats.
pub fn train(
    point: &GridPoint,
    task: &Task,
    device: &Device,
    on_step: impl FnMut(usize, usize),
) -> RunRecord {
    train_loop(
        point,
        task,
        device,
        &Instrumentation::of(&point.run.train),
        on_step,
    )
}

/// The run itself: build the model, then step through shuffled batches until the budget is
/// spent, stopping early on divergence, evaluating on schedule.
fn train_loop(
    point: &GridPoint,
    task: &Task,
    device: &Device,
    instrumentation: &Instrumentation,
    mut on_step: impl FnMut(usize, usize),
) -> RunRecord {
    let started = Instant::now();
    let config = &point.run.train;
    let train_device = device.clone().autodiff();
    let mut record = RunRecord {
        classes: Some(task.classes),
        image_shape: match task.input_shape {
            InputShape::Image(shape) => Some(shape),
            _ => None,
        },
        ..RunRecord::new(point)
    };
    let mut model = match build_model(point, task, &train_device) {
        Ok(model) => model,
        Err(e) => return record.ended(Status::Impossible, e.to_string(), started),
    };
    if instrumentation.gradient_flow {
        // On a twin of the model, so that the measurement's forward pass leaves the running
        // statistics of the one that trains untouched.
        let twin = build_model(point, task, &train_device).ok();
        let flow = twin.and_then(|twin| gradient_flow(&twin, 0, point, task, &train_device));
        record.gradient_flow.extend(flow);
    }
    let mut optimizer = optimizer(config);
    let loss_fn = CrossEntropyLossConfig::new().init(&train_device);
    let total_steps = budget_in_steps(config, task.train.len());
    let eval_steps = config.eval_steps(total_steps);
    let mut step_times = StepTimes::default();
    let mut loss_windows = LossWindows::for_run(total_steps);
    let mut divergence = DivergenceWatch::new(config.divergence_factor);
    if eval_steps.contains(&0) {
        // A run that trains nothing is scored as initialized.
        let when = (0, 0, true);
        record
            .evals
            .push(evaluate(&model, point, task, when, device));
    }

    'training: for epoch in 0.. {
        let batches = match epoch_batches(task, config, epoch) {
            Ok(batches) => batches,
            Err(reason) => return record.ended(Status::Impossible, reason, started),
        };
        for indices in batches {
            if record.steps == total_steps {
                break 'training;
            }
            let batch = task.batch(&indices, false, None, &train_device);
            let step_started = Instant::now();
            let mut instruments = instrumentation.for_step(record.steps);
            let loss = match forward_loss(&model, batch, &loss_fn, &mut instruments) {
                Ok(loss) => loss,
                Err(e) => return record.ended(Status::Impossible, e.to_string(), started),
            };
            if let Some(sites) = instruments.take_probe() {
                let step = record.steps;
                record.probes.push(Probe { step, sites });
            }
            let loss_value = loss.clone().into_scalar::<f32>();
            if let Some(reason) = divergence.check(loss_value, record.steps + 1) {
                record.losses.extend(loss_windows.close());
                return record.ended(Status::Diverged, reason, started);
            }

            let lr = point.run.lr();
            let rate = (config.lr_schedule).rate(lr, record.steps, total_steps, config.warmup);
            model = update(model, &mut optimizer, loss, config, rate);
            step_times.push(step_started.elapsed(), instrumentation);

            record.steps += 1;
            record.samples += indices.len();
            let window = loss_windows.push(record.steps, record.samples, loss_value);
            record.losses.extend(window);
            if eval_steps.contains(&record.steps) {
                let when = (record.steps, record.samples, record.steps == total_steps);
                record
                    .evals
                    .push(evaluate(&model, point, task, when, device));
            }
            on_step(record.steps, total_steps);
        }
    }
    record.losses.extend(loss_windows.close());
    if instrumentation.gradient_flow && record.steps > 0 {
        let after = gradient_flow(&model, record.steps, point, task, &train_device);
        record.gradient_flow.extend(after);
    }
    (record.step_seconds, record.norm_seconds) = step_times.medians();
    record.wall_seconds = started.elapsed().as_secs_f64();
    record
}

/// The batches of `epoch`, or why there are none.
fn epoch_batches(task: &Task, config: &TrainConfig, epoch: u64) -> Result<Vec<Vec<usize>>, String> {
    match task.train_batches(config.batch_size, config.batches, config.seed, epoch) {
        Ok(batches) if !batches.is_empty() => Ok(batches),
        Ok(_) => Err("the training split makes no batch of this kind".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Backward on `loss` plus the weight penalties, the gradient clipped, and one step of
/// `optimizer` at `rate`.
fn update(
    model: Model,
    optimizer: &mut ModuleOptimizer,
    loss: Tensor<1>,
    config: &TrainConfig,
    rate: f64,
) -> Model {
    let penalty = weight_penalty(&model, config.l1, config.l2, &loss.device());
    let mut grads = GradientsParams::from_grads((loss + penalty).backward(), &model);
    if let Some(max_norm) = config.grad_clip {
        clip_global_norm(&model, &mut grads, max_norm);
    }
    optimizer.step(rate, model, grads)
}

/// The mean cross-entropy of `model` on `batch`, its forward pass measured by `instruments`.
fn forward_loss(
    model: &Model,
    batch: Batch,
    loss_fn: &CrossEntropyLoss,
    instruments: &mut Instruments,
) -> Result<Tensor<1>, normlab_model::ModelError> {
    let logits = model.forward_instrumented(batch.input, instruments)?;
    Ok(loss_fn.forward(logits, batch.targets))
}

/// Stops a run whose loss is not finite, or whose smoothed loss has grown past `factor` times
/// its first loss.
struct DivergenceWatch {
    factor: f64,
    first: Option<f32>,
    smoothed: Option<f32>,
}

impl DivergenceWatch {
    fn new(factor: f64) -> Self {
        Self {
            factor,
            first: None,
            smoothed: None,
        }
    }

    /// Why the run is over after the loss `loss` of step `step`, if it is.
    fn check(&mut self, loss: f32, step: usize) -> Option<String> {
        let first = *self.first.get_or_insert(loss);
        let smoothed = self.smoothed.map_or(loss, |s| 0.9 * s + 0.1 * loss);
        self.smoothed = Some(smoothed);
        (!loss.is_finite() || smoothed > self.factor as f32 * first)
            .then(|| format!("training loss {loss} at step {step} (first loss {first})"))
    }
}

/// The wall time of every step, and of the norm layers in it when timed.
#[derive(Default)]
struct StepTimes {
    steps: Vec<Duration>,
    norms: Vec<NormTime>,
}

impl StepTimes {
    fn push(&mut self, step: Duration, instrumentation: &Instrumentation) {
        self.steps.push(step);
        if let Some(timer) = &instrumentation.norm_timer {
            self.norms.push(timer.lap());
        }
    }

    /// The median step time, seconds, and the medians of the norm layers' time, when timed
    /// (a model without norm layers has nothing to time).
    fn medians(&self) -> (f64, Option<NormSeconds>) {
        let seconds =
            |f: fn(&NormTime) -> Duration| median(self.norms.iter().map(|t| f(t).as_secs_f64()));
        let norms = self.norms.iter().any(|t| t.calls > 0).then(|| NormSeconds {
            forward: seconds(|t| t.forward),
            backward: seconds(|t| t.backward),
            total: seconds(|t| t.forward + t.backward),
        });
        (median(self.steps.iter().map(Duration::as_secs_f64)), norms)
    }
}

/// The upper median; 0 for no values.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Recurrent BN's Figure 1: `||dLoss/dh_t||` for every step `t`, on the first training batch,
/// from the first step where the measurement means something (see [`GradientFlow`]).
fn gradient_flow(
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
    let blank_start = match &batch.input {
        Input::Sequences { values, .. } => shared_blank_start(values.clone()),
        Input::Images(_) | Input::Features(_) => 0,
    };
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let mut instruments = Instruments::none().tapping_gradients();
    let loss = forward_loss(model, batch, &loss_fn, &mut instruments).ok()?;
    let norms = instruments.gradient_norms(&loss.backward());
    let last_overflow = norms.iter().rposition(|norm| !norm.is_finite());
    let first_step = last_overflow
        .map_or(blank_start, |t| t + 1)
        .max(blank_start);
    Some(GradientFlow {
        step,
        first_step,
        norms: norms.get(first_step..).unwrap_or_default().to_vec(),
    })
}

/// The first step by which every sequence of `values: [N, T, F]` has left the blank start
/// that all of them share (the empty top rows of every digit): the value of step 0, where it
/// is the same in every sequence. Before it, some sequences are still in the shared state, so
/// that a norm's per-step statistics come from a few sequences or none.
fn shared_blank_start(values: Tensor<3>) -> usize {
    let [n, steps, features] = values.dims();
    let values = values.into_data().try_into_vec::<f32>().unwrap_or_default();
    let step = |i: usize, t: usize| &values[(i * steps + t) * features..][..features];
    if steps == 0 || (1..n).any(|i| step(i, 0) != step(0, 0)) {
        return 0;
    }
    let blank = step(0, 0);
    (0..n)
        .map(|i| {
            (0..steps)
                .position(|t| step(i, t) != blank)
                .unwrap_or(steps)
        })
        .max()
        .unwrap_or(0)
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
        // burn's Adam with its update fused on flex: the same bits, in one pass per parameter.
        OptimizerKind::Adam => AdamConfig::default()
            .with_epsilon(1e-8)
            .with_weight_decay(decay.map(|decay| decay.penalty))
            .init(),
    }
}

/// Steps the budget allows: whole batches, the last one maybe short; none for 0 samples.
pub(crate) fn budget_in_steps(config: &TrainConfig, train_examples: usize) -> usize {
    match config.budget.samples(train_examples) {
        0 => 0,
        samples => samples.div_ceil(config.batch_size),
    }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use normlab_testkit::halved_smallest_normal;

    use super::*;

    fn experiment(subnormals: &str) -> Experiment {
        let text = normlab_testkit::SMALL_EXPERIMENT.replace(
            "samples = 100",
            &format!("samples = 100\nsubnormals = {subnormals}"),
        );
        Experiment::parse(Path::new("flush.toml"), text).unwrap()
    }

    #[test]
    fn each_run_works_on_the_threads_its_setting_asks_for() {
        let experiment = experiment(r#"["keep", "flush"]"#);
        let threads = TrainingThreads::for_job(&experiment, 1).unwrap();
        let (mut kept, mut flushed) = (0, 0);
        for point in &experiment.points {
            let value = threads.run(point, halved_smallest_normal);
            match point.run.train.subnormals {
                Subnormals::Keep => {
                    assert!(value.is_subnormal(), "{}", point.id);
                    kept += 1;
                }
                Subnormals::Flush => {
                    assert_eq!(value, 0.0, "{}", point.id);
                    flushed += 1;
                }
            }
        }
        assert_eq!((kept, flushed), (12, 12));
    }

    #[test]
    fn no_flushing_threads_start_for_an_experiment_that_keeps_subnormals() {
        let default = Experiment::parse(
            Path::new("keep.toml"),
            normlab_testkit::SMALL_EXPERIMENT.to_string(),
        )
        .unwrap();
        for experiment in [default, experiment(r#""keep""#)] {
            assert!(
                TrainingThreads::for_job(&experiment, 1)
                    .unwrap()
                    .flushing
                    .is_none()
            );
        }
    }

    /// Models wide enough, at a batch large enough, for the kernels to split their work over
    /// threads, each with batch norm: dense layers, convolutions, and an LSTM reading the
    /// digits row by row.
    const WIDE_MODELS: [&str; 3] = [
        "[model]\nkind = \"mlp\"\nhidden = [512, 512]\nnorm = \"batch\"",
        "[model]\nkind = \"resnet\"\nwidths = [16, 32, 64]\nblocks = 1\nnorm = \"batch\"",
        "image_steps = \"rows\"\n\n[model]\nkind = \"recurrent\"\ncell = \"lstm\"\nhidden = 256\n\
         norm = { kind = \"batch\", per_step = 8 }",
    ];

    #[test]
    fn a_run_gives_the_same_numbers_on_one_thread_as_on_three() {
        for model in WIDE_MODELS {
            let text = format!(
                "[data]\nset = \"digits\"\n{model}\n\n\
                 [train]\nbatch_size = 64\nlr = 0.05\nsamples = 256\nevals = 1\n"
            );
            let experiment = Experiment::parse(Path::new("threads.toml"), text).unwrap();
            let tasks = crate::tasks::Tasks::load(&experiment).unwrap();
            let point = &experiment.points[0];
            let on = |threads| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let task = tasks.of(point);
                let record = pool.install(|| train(point, task, &Device::flex(), |_, _| {}));
                assert_eq!(
                    record.status,
                    Status::Finished,
                    "{model}: {:?}",
                    record.reason
                );
                RunRecord {
                    wall_seconds: 0.0,
                    step_seconds: 0.0,
                    ..record
                }
            };
            assert_eq!(on(1), on(3), "{model}");
        }
    }
}
