//! The sentence at the top of a report on batch sizes: batch norm at its smallest normalization
//! batch against the batch-free norms trained at the same batch size, measured in spreads over
//! seeds (standard deviations), so that a reader sees at once whether the failure shows.

use normlab_norm::NormConfig;

use crate::analysis::{Spread, final_error};
use crate::axes::AxisKey;
use crate::report::settings;
use crate::result_set::{ResultSet, norm_label};
use crate::results::{RunRecord, Status};

/// How many standard deviations over seeds a gap must span before the headline calls it clear.
const CLEAR_GAP_IN_SPREADS: f64 = 3.0;

/// The batch-free norms batch norm is compared with.
const BATCH_FREE: [&str; 2] = ["group", "layer"];

/// The examples batch norm normalizes over in training: its ghost batch, or the whole batch.
fn normalization_batch(record: &RunRecord) -> Option<usize> {
    let batch_size = record.config.train.batch_size;
    match record.config.model.norm() {
        NormConfig::Batch(config) => Some(config.ghost_batch.unwrap_or(batch_size).min(batch_size)),
        _ => None,
    }
}

/// The sample standard deviation over seeds of a setting's errors: the unit a gap is measured
/// in. None for a single run.
fn seed_std(runs: &[&RunRecord]) -> Option<f64> {
    let errors: Vec<f64> = runs.iter().filter_map(|r| final_error(r)).collect();
    let n = errors.len() as f64;
    let mean = errors.iter().sum::<f64>() / n;
    let squares: f64 = errors.iter().map(|e| (e - mean).powi(2)).sum();
    (errors.len() >= 2).then(|| (squares / (n - 1.0)).sqrt())
}

/// The headline comparison of a report on batch sizes: batch norm at its smallest
/// normalization batch against the best batch-free norm trained at the same batch size.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchVerdict {
    /// The examples batch norm normalizes over.
    pub examples: usize,
    /// The training batch size of both settings.
    pub batch_size: usize,
    /// Batch norm's errors over seeds, in percent.
    pub batch: Spread,
    /// The batch-free norm it is compared with.
    pub reference: String,
    /// That norm's errors over seeds, in percent.
    pub other: Spread,
    /// The larger of the two standard deviations over seeds; `None` with one seed.
    pub spread: Option<f64>,
}

/// What a [`BatchVerdict`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// One seed each: no spread to measure the gap against.
    NoSpread,
    /// Batch norm ends lower.
    BatchNormBetter,
    /// Batch norm ends higher by more than [`CLEAR_GAP_IN_SPREADS`] standard deviations.
    Shown,
    /// Batch norm ends higher, by no more than that.
    NotShown,
}

impl BatchVerdict {
    /// Batch norm's mean error minus the reference's, in points.
    pub(crate) fn gap(&self) -> f64 {
        self.batch.mean - self.other.mean
    }

    pub(crate) fn outcome(&self) -> Outcome {
        match self.spread {
            None => Outcome::NoSpread,
            Some(_) if self.gap() <= 0.0 => Outcome::BatchNormBetter,
            Some(spread) if self.gap() > CLEAR_GAP_IN_SPREADS * spread => Outcome::Shown,
            Some(_) => Outcome::NotShown,
        }
    }

    /// The verdict's clause after the gap.
    fn clause(&self) -> String {
        let spread = self.spread.unwrap_or_default();
        match self.outcome() {
            Outcome::NoSpread => {
                "one seed each, so no spread over seeds to measure it against".to_string()
            }
            Outcome::BatchNormBetter => "batch norm is the better of the two: these runs do not \
                                          show it failing at this batch"
                .to_string(),
            Outcome::Shown => format!(
                "more than {CLEAR_GAP_IN_SPREADS} times the larger standard deviation over seeds \
                 ({spread:.2} points): the failure shows"
            ),
            Outcome::NotShown => format!(
                "not more than {CLEAR_GAP_IN_SPREADS} times the larger standard deviation over \
                 seeds ({spread:.2} points): these runs do not show batch norm failing at this \
                 batch"
            ),
        }
    }

    /// True for the runs the verdict is computed from: its two settings, every seed.
    pub(crate) fn rests_on(&self, record: &RunRecord) -> bool {
        let same_batch = record.config.train.batch_size == self.batch_size;
        let label = norm_label(record);
        same_batch
            && (label == self.reference || normalization_batch(record) == Some(self.examples))
    }
}

/// The [`BatchVerdict`] of `records`, when the experiment compares batch norm with a batch-free
/// norm at one batch size and nothing but the norm, the batch size and the seed varies.
pub(crate) fn batch_verdict(set: &ResultSet) -> Option<BatchVerdict> {
    if !(set.other_axes(&[AxisKey::Norm, AxisKey::Seed, AxisKey::BatchSize])).is_empty() {
        return None;
    }
    let settings = settings(set);
    let batch_settings = settings.iter().filter_map(|(_, runs)| {
        let errors = Spread::of(runs.iter().filter_map(|r| final_error(r)))?;
        Some((normalization_batch(runs[0])?, runs, errors))
    });
    let (examples, batch_runs, batch) = batch_settings.min_by_key(|(n, ..)| *n)?;
    let batch_size = batch_runs[0].config.train.batch_size;
    let references = settings.iter().filter_map(|(_, runs)| {
        let label = norm_label(runs[0]);
        let same_batch = runs[0].config.train.batch_size == batch_size;
        let errors = Spread::of(runs.iter().filter_map(|r| final_error(r)))?;
        let kind = runs[0].config.model.norm().kind();
        (same_batch && BATCH_FREE.contains(&kind)).then_some((label, runs, errors))
    });
    let (reference, other_runs, other) = references.min_by(|a, b| a.2.mean.total_cmp(&b.2.mean))?;
    let spread = seed_std(batch_runs)
        .zip(seed_std(other_runs))
        .map(|(a, b)| a.max(b));
    Some(BatchVerdict {
        examples,
        batch_size,
        batch,
        reference,
        other,
        spread,
    })
}

/// The sentence at the top of the report: empty unless [`batch_verdict`] has a verdict.
pub(crate) fn headline(set: &ResultSet) -> String {
    let Some(verdict) = batch_verdict(set) else {
        return String::new();
    };
    let no_batch_of_one = set.records.iter().any(|r| {
        r.status == Status::Impossible
            && normalization_batch(r).is_some()
            && r.config.train.batch_size == 1
    });
    let also = match no_batch_of_one {
        true => " At batch size 1 batch norm cannot train at all.",
        false => "",
    };
    let BatchVerdict {
        examples,
        batch,
        reference,
        other,
        ..
    } = &verdict;
    format!(
        "**In one sentence:** batch norm normalizing over {examples} examples ends at \
         {:.2}% error ({:.2}..{:.2}) against {:.2}% ({:.2}..{:.2}) for `{reference}` at the same \
         batch size, {:+.2} points, {}.{also}\n\n",
        batch.mean,
        batch.min,
        batch.max,
        other.mean,
        other.min,
        other.max,
        verdict.gap(),
        verdict.clause(),
    )
}
