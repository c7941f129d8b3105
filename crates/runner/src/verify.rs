//! `normlab verify`: retrains grid points of a results folder on this machine, and says run by
//! run whether they give the committed numbers, and whether the report's headline verdict still
//! holds with them.
//!
//! The points are chosen to cover the verdict first (its two settings, every seed), then every
//! norm at every batch size once, then the rest of the grid in its order.

use std::fmt;
use std::path::Path;

use burn::prelude::*;

use crate::analysis::final_error;
use crate::config::{Experiment, GridPoint};
use crate::error::RunnerError;
use crate::machine::{self, Machine};
use crate::model_init::dry_run;
use crate::report::headline::{BatchVerdict, Gap, batch_verdicts};
use crate::result_set::{ResultSet, norm_label};
use crate::results::{EvalMode, ResultsDir, RunRecord, Score, Status};
use crate::sweep::experiment_of;
use crate::tasks::Tasks;
use crate::train::TrainingThreads;

/// One retrained grid point.
#[derive(Debug, Clone)]
pub struct Rerun {
    /// The run's id.
    pub id: String,
    /// The committed record's status and final error (percent).
    pub committed: (Status, Option<f64>),
    /// This machine's status and final error (percent).
    pub new: (Status, Option<f64>),
    /// Every evaluation gave the committed loss and error to the last bit.
    pub identical: bool,
}

/// What `verify` found.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The experiment's name.
    pub name: String,
    /// The retrained points, in the order they were chosen.
    pub reruns: Vec<Rerun>,
    /// The machines the committed runs were trained on (`machine.txt`; none recorded for
    /// folders made before it was written).
    pub trained_on: Vec<String>,
    /// The machine they were retrained on.
    pub here: Machine,
    /// The headline verdicts of the committed records; none where the report has none.
    pub(crate) committed: Vec<BatchVerdict>,
    /// The same verdicts with the retrained records in place of the committed ones.
    pub(crate) new: Vec<BatchVerdict>,
}

impl Verification {
    /// True when every verdict says the same here: the same outcome (shown, weak, not shown)
    /// and every gap of the same sign.
    pub fn verdict_holds(&self) -> bool {
        let signs = |v: &BatchVerdict| -> Vec<bool> {
            [&v.at_largest, &v.against_batch_free]
                .iter()
                .map(|g| g.as_ref().is_some_and(|g| g.points > 0.0))
                .collect()
        };
        self.committed.len() == self.new.len()
            && (self.committed.iter().zip(&self.new))
                .all(|(old, new)| old.outcome() == new.outcome() && signs(old) == signs(new))
    }
}

/// Retrains `runs` grid points of the results folder `results` (by default the verdict's runs
/// and one run of every norm at every batch size) on `device`.
pub fn verify(
    results: &Path,
    runs: Option<usize>,
    device: &Device,
) -> Result<Verification, RunnerError> {
    let dir = ResultsDir::new(results);
    let experiment = experiment_of(&dir)?;
    let records = dir.read_runs(&experiment)?;
    let committed = batch_verdicts(&ResultSet::new(&experiment, records.clone()));
    let chosen = choose(&experiment, &records, &committed, runs);
    let tasks = Tasks::load(&experiment)?;
    let threads = TrainingThreads::for_job(&experiment, 1)?;

    let mut reruns = Vec::new();
    let mut replaced = records.clone();
    for point in chosen {
        let task = tasks.of(point);
        let new = match dry_run(point, task, device) {
            Ok(()) => threads.train(point, task, device, |_, _| {}),
            Err(reason) => RunRecord {
                status: Status::Impossible,
                reason: Some(reason.to_string()),
                ..RunRecord::new(point)
            },
        };
        let old = records.iter().find(|r| r.id == point.id);
        reruns.push(Rerun {
            id: point.id.clone(),
            committed: old.map_or((Status::Impossible, None), |r| (r.status, final_error(r))),
            new: (new.status, final_error(&new)),
            identical: old.is_some_and(|old| same_evaluations(old, &new)),
        });
        match replaced.iter_mut().find(|r| r.id == point.id) {
            Some(slot) => *slot = new,
            None => replaced.push(new),
        }
    }
    Ok(Verification {
        name: experiment.name.clone(),
        reruns,
        trained_on: machine::recorded(&dir),
        here: Machine::this(),
        new: batch_verdicts(&ResultSet::new(&experiment, replaced)),
        committed,
    })
}

/// The grid points to retrain: those the verdict rests on, then the first run of every
/// (norm, batch size) not covered yet, then the rest in grid order; `runs` of them, or all
/// of the first two groups.
fn choose<'a>(
    experiment: &'a Experiment,
    records: &[RunRecord],
    verdicts: &[BatchVerdict],
    runs: Option<usize>,
) -> Vec<&'a GridPoint> {
    let record = |point: &GridPoint| records.iter().find(|r| r.id == point.id);
    let in_verdict =
        |point: &&GridPoint| record(point).is_some_and(|r| verdicts.iter().any(|v| v.rests_on(r)));
    let mut chosen: Vec<&GridPoint> = experiment.points.iter().filter(in_verdict).collect();
    let cell = |point: &GridPoint| {
        let norm = record(point).map(norm_label);
        (norm, point.run.train.batch_size)
    };
    for point in &experiment.points {
        if !chosen.iter().any(|c| cell(c) == cell(point)) {
            chosen.push(point);
        }
    }
    let count = runs.unwrap_or(chosen.len());
    for point in &experiment.points {
        if chosen.len() >= count {
            break;
        }
        if !chosen.iter().any(|c| c.id == point.id) {
            chosen.push(point);
        }
    }
    chosen.truncate(count);
    chosen
}

/// Every evaluation of `new` has the losses and the errors of `old`'s in every mode, bit for
/// bit.
fn same_evaluations(old: &RunRecord, new: &RunRecord) -> bool {
    let scores = |r: &RunRecord| -> Vec<Vec<(EvalMode, u32, u32)>> {
        r.evals
            .iter()
            .map(|e| {
                let bits =
                    |(mode, s): (&EvalMode, &Score)| (*mode, s.loss.to_bits(), s.error.to_bits());
                e.scores.iter().map(bits).collect()
            })
            .collect()
    };
    old.status == new.status && scores(old) == scores(new)
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let error = |(status, error): (Status, Option<f64>)| match (status, error) {
            (_, Some(e)) => format!("{e:.2}%"),
            (status, None) => format!("{status:?}").to_lowercase(),
        };
        writeln!(
            f,
            "{}: {} runs retrained on this machine\n",
            self.name,
            self.reruns.len()
        )?;
        writeln!(f, "| run | committed | here | same bits |")?;
        writeln!(f, "| --- | --- | --- | --- |")?;
        for rerun in &self.reruns {
            let same = if rerun.identical { "yes" } else { "no" };
            let (old, new) = (error(rerun.committed), error(rerun.new));
            writeln!(f, "| {} | {old} | {new} | {same} |", rerun.id)?;
        }
        let identical = self.reruns.iter().filter(|r| r.identical).count();
        writeln!(
            f,
            "\n{identical} of {} runs gave the committed evaluations to the last bit.",
            self.reruns.len()
        )?;
        let trained_on = match self.trained_on.is_empty() {
            true => "not recorded (no machine.txt: the folder predates it)".to_string(),
            false => self.trained_on.join("; "),
        };
        writeln!(f, "Trained on: {trained_on}. Retrained on: {}.", self.here)?;
        if !self.trained_on.iter().any(|m| self.here.same_kind_as(m)) {
            writeln!(
                f,
                "Runs repeat to the last bit only on the same kind of CPU (the same vector \
                 instructions; docs/experiments.md): on another kind, expect the same verdict, \
                 not the same bits."
            )?;
        }
        let gap = |gap: &Option<Gap>| match gap {
            Some(g) => {
                let spreads = g.in_spreads().map(|k| format!(", {k:.1} seed spreads"));
                let spreads = spreads.unwrap_or_default();
                format!(" {:+.2} points against {}{spreads}", g.points, g.other_name)
            }
            None => String::new(),
        };
        let describe = |verdicts: &[BatchVerdict]| -> Vec<String> {
            verdicts
                .iter()
                .map(|v| {
                    format!(
                        "`{}` at batch size {}: {:.2}%;{};{}: {:?}",
                        v.label,
                        v.batch_size,
                        v.batch.mean,
                        gap(&v.at_largest),
                        gap(&v.against_batch_free),
                        v.outcome()
                    )
                })
                .collect()
        };
        if self.committed.is_empty() {
            writeln!(f, "The report has no headline verdict.")?;
        }
        for (old, new) in describe(&self.committed).iter().zip(describe(&self.new)) {
            writeln!(f, "Verdict, committed: {old}")?;
            writeln!(f, "Verdict, here:      {new}")?;
        }
        let holds = match self.verdict_holds() {
            true => "holds on this machine",
            false => "DOES NOT HOLD on this machine",
        };
        writeln!(f, "The verdict {holds}.")
    }
}
