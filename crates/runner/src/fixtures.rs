//! Synthetic experiments and their run records, for the tests of the plots and the report.

use std::collections::BTreeMap;
use std::path::Path;

use normlab_model::probe::{SiteStats, Summary};
use normlab_testkit::SMALL_EXPERIMENT;

use crate::axes::AxisKey;
use crate::config::{Experiment, GridPoint};
use crate::result_set::ResultSet;
use crate::results::{
    Eval, EvalMode, GradientFlow, NormSeconds, Probe, RunRecord, Score, Status, StepLoss,
};

/// Final validation error in % of each synthetic run: batch norm gets 15 points worse at
/// batch size 2, the others do not move; seed 1 adds one point.
fn error_percent(norm: &str, batch_size: usize, seed: u64) -> f32 {
    let base = match (norm, batch_size) {
        ("batch", 2) => 20.0,
        ("batch", _) => 5.0,
        ("none", _) => 10.0,
        _ => 6.0,
    };
    base + seed as f32
}

/// Train-mode error of batch norm: 9% (+ seed) at batch size 2, equal to eval mode at 8.
fn train_mode_percent(norm: &str, batch_size: usize, seed: u64) -> Option<f32> {
    match (norm, batch_size) {
        ("batch", 2) => Some(9.0 + seed as f32),
        ("batch", _) => Some(error_percent(norm, batch_size, seed)),
        _ => None,
    }
}

/// Step time: none 1 ms, batch 1.25 ms, group 1.5 ms.
fn step_seconds(norm: &str) -> f64 {
    match norm {
        "none" => 1.0e-3,
        "batch" => 1.25e-3,
        _ => 1.5e-3,
    }
}

/// Percentiles of unit 0 at a probe: without a norm the median drifts by 0.05 per step.
fn probe(norm: &str, step: usize) -> Probe {
    let drift = if norm == "none" {
        0.05 * step as f32
    } else {
        0.0
    };
    let summary = Summary {
        mean: drift,
        std: 1.0,
        percentiles: vec![[drift - 1.0, drift, drift + 1.0]],
    };
    let sites = ["hidden 1", "hidden 2"].map(|site| SiteStats {
        site: site.into(),
        before: summary.clone(),
        after: summary.clone(),
    });
    Probe {
        step,
        sites: sites.to_vec(),
    }
}

/// What a synthetic run ends with.
struct Outcome {
    error_percent: f32,
    train_mode_percent: Option<f32>,
    diverged: bool,
}

impl Outcome {
    /// A run that finished at `error_percent`, without a train-mode score.
    fn finished(error_percent: f32) -> Self {
        Self {
            error_percent,
            train_mode_percent: None,
            diverged: false,
        }
    }
}

/// A synthetic record of `point`: a decaying loss (exploding after step 5 and cut at step 10
/// if it diverged), one final evaluation unless it diverged, probes at steps 0, 10 and 20,
/// and the step time of its norm.
fn record(point: &GridPoint, outcome: Outcome) -> RunRecord {
    let norm = norm_labels_of(point);
    let (batch_size, seed) = (point.run.train.batch_size, point.run.train.seed);
    let diverged = outcome.diverged;
    let steps = if diverged { 10 } else { 100 / batch_size };
    let losses = (0..steps)
        .map(|step| {
            let samples = (step + 1) * batch_size;
            let loss = 2.3 * (-(samples as f32) / 40.0).exp() + 0.05 * seed as f32;
            let exploded = diverged && step > 5;
            StepLoss {
                step,
                samples,
                loss: if exploded { 1e3 * step as f32 } else { loss },
            }
        })
        .collect();
    let score = |percent: f32| Score {
        loss: 0.5,
        error: percent / 100.0,
    };
    let mut scores = BTreeMap::from([(EvalMode::Eval, score(outcome.error_percent))]);
    if let Some(train_mode) = outcome.train_mode_percent {
        scores.insert(EvalMode::TrainMode, score(train_mode));
        // PreciseBN recovers 3 points of batch norm's eval error.
        scores.insert(EvalMode::Precise, score(outcome.error_percent - 3.0));
    }
    let final_eval = Eval {
        step: steps,
        samples: 100,
        scores,
    };
    RunRecord {
        id: point.id.clone(),
        axes: point.axes.clone(),
        status: if diverged {
            Status::Diverged
        } else {
            Status::Finished
        },
        reason: diverged.then(|| "the loss became non-finite at step 9".to_string()),
        config: point.run.clone(),
        lr: point.run.lr(),
        classes: Some(10),
        image_shape: None,
        losses,
        evals: if diverged {
            Vec::new()
        } else {
            vec![final_eval]
        },
        probes: [0, 10, 20].map(|step| probe(&norm, step)).to_vec(),
        gradient_flow: Vec::new(),
        steps,
        samples: 100,
        step_seconds: step_seconds(&norm),
        norm_seconds: None,
        wall_seconds: 1.5,
    }
}

/// The norm label of a grid point.
fn norm_labels_of(point: &GridPoint) -> String {
    let norm = point.axes.iter().find(|s| s.key == AxisKey::Norm);
    norm.expect("the fixtures vary the norm").label.clone()
}

/// The experiment file `text` (named `file`) and a record for each of its grid points, made by
/// `make(experiment, point, norm label)`.
fn synthetic(
    file: &str,
    text: &str,
    make: impl Fn(&Experiment, &GridPoint, String) -> RunRecord,
) -> ResultSet {
    let experiment = Experiment::parse(Path::new(file), text.to_string()).unwrap();
    let records = experiment
        .points
        .iter()
        .map(|point| make(&experiment, point, norm_labels_of(point)))
        .collect();
    ResultSet::new(&experiment, records)
}

/// The synthetic experiment: 3 norms x batch sizes 2, 8 x seeds 0, 1, every run finished
/// except `none` at batch size 2 with seed 1, which diverged.
pub(crate) fn fixture() -> ResultSet {
    synthetic("small_batches.toml", SMALL_EXPERIMENT, |_, point, norm| {
        let (batch_size, seed) = (point.run.train.batch_size, point.run.train.seed);
        let outcome = Outcome {
            error_percent: error_percent(&norm, batch_size, seed),
            train_mode_percent: train_mode_percent(&norm, batch_size, seed),
            diverged: norm == "none" && batch_size == 2 && seed == 1,
        };
        record(point, outcome)
    })
}

const LR_EXPERIMENT: &str = include_str!("../tests/experiments/lr.toml");

/// A learning-rate sweep: without a norm every run at lr 1 diverges; errors fall with the
/// learning rate (10% at 0.01, 8% at 0.1, 6% at 1, layer norm 1 point lower) and are
/// evaluated at lengths 64 (the training length) and 256 (3 points worse).
pub(crate) fn lr_fixture() -> ResultSet {
    synthetic("lr_sweep.toml", LR_EXPERIMENT, |_, point, norm| {
        let lr = point.run.train.lr;
        let error_percent = match lr {
            0.01 => 10.0,
            0.1 => 8.0,
            _ => 6.0,
        } - if norm == "layer" { 1.0 } else { 0.0 };
        let outcome = Outcome {
            error_percent,
            train_mode_percent: None,
            diverged: norm == "none" && lr == 1.0,
        };
        let mut record = record(point, outcome);
        for eval in &mut record.evals {
            for (length, worse) in [(64, 0.0), (256, 3.0)] {
                let score = Score {
                    loss: (error_percent + worse) / 10.0,
                    error: (error_percent + worse) / 100.0,
                };
                eval.scores.insert(EvalMode::Length(length), score);
            }
        }
        record
    })
}

const KERNELS_EXPERIMENT: &str = include_str!("../tests/experiments/kernels.toml");

/// Timed norm layers: batch norm's take 2 ms of an 8 ms step with the fused kernels and 6 of
/// 12 composed (seed 1 adds 0.1 ms to both); `none` steps take 5 ms and time no layer.
pub(crate) fn kernels_fixture() -> ResultSet {
    synthetic("kernels.toml", KERNELS_EXPERIMENT, |_, point, norm| {
        let outcome = Outcome::finished(10.0);
        let mut record = record(point, outcome);
        let seed = point.run.train.seed as f64 * 1e-4;
        let composed = record.label(&AxisKey::NormKernels) == Some("composed");
        let (step, in_norms) = match (norm.as_str(), composed) {
            ("none", _) => (5e-3, 0.0),
            (_, false) => (8e-3, 2e-3),
            (_, true) => (12e-3, 6e-3),
        };
        record.step_seconds = step + seed;
        record.norm_seconds = (norm != "none").then_some(NormSeconds {
            forward: (in_norms + seed) / 2.0,
            backward: (in_norms + seed) / 2.0,
            total: in_norms + seed,
        });
        record
    })
}

const GRADIENT_EXPERIMENT: &str = include_str!("../tests/experiments/gradient.toml");

/// Recurrent BN's Figure 1 measured at initialization over 9 steps, the first 3 blank: relative
/// to the last step, the gradient 1 step back (a quarter of the farthest, 5) is 10^-4 (seed 0)
/// and 10^-6 (seed 1) for gamma 1, 10^-0.5 and 10^-0.7 for gamma 0.1, 10^-1 for no norm.
pub(crate) fn gradient_fixture() -> ResultSet {
    synthetic("gradient.toml", GRADIENT_EXPERIMENT, |_, point, norm| {
        let outcome = Outcome::finished(90.0);
        let mut record = record(point, outcome);
        let one_back = match (norm.contains("gamma_init=1.0"), point.run.train.seed) {
            (true, 0) => 1e-4,
            (true, _) => 1e-6,
            (false, 0) if norm.contains("batch") => 10f32.powf(-0.5),
            (false, _) if norm.contains("batch") => 10f32.powf(-0.7),
            _ => 0.1,
        };
        record.gradient_flow = vec![GradientFlow {
            step: 0,
            first_step: 3,
            norms: vec![1e-9, 1e-8, 1e-7, 1e-6, one_back, 1.0],
        }];
        record
    })
}

const BATCHING_EXPERIMENT: &str = include_str!("../tests/experiments/batching.toml");

/// Non-i.i.d. batches: batch norm's error is 10% and 11% (seeds 0, 1) with shuffled batches,
/// 20% and 21% with same-class pairs; layer norm's 10% and 11%, then 10.5% and 11.5%.
pub(crate) fn batching_fixture() -> ResultSet {
    synthetic("batching.toml", BATCHING_EXPERIMENT, |_, point, norm| {
        let seed = point.run.train.seed as f32;
        let paired = point.run.train.batches != crate::config::Batching::Shuffled;
        let shift = match (norm.as_str(), paired) {
            (_, false) => 0.0,
            ("batch", true) => 10.0,
            _ => 0.5,
        };
        let outcome = Outcome::finished(10.0 + seed + shift);
        record(point, outcome)
    })
}
