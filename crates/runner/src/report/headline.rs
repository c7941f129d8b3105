//! The verdict at the top of a report on batch sizes: batch norm at its smallest
//! normalization batch against the same norm at its largest, and against the batch-free norms
//! trained at the same batch size, each gap measured in spreads over seeds (standard
//! deviations), so that a reader sees at once whether the failure shows and how clearly.

use normlab_norm::NormConfig;

use crate::analysis::{Spread, final_error};
use crate::axes::AxisKey;
use crate::config::Batching;
use crate::report::settings;
use crate::result_set::{ResultSet, norm_label};
use crate::results::{RunRecord, Status};

/// A gap of more spreads over seeds than this is "shown".
pub(crate) const SHOWN_IN_SPREADS: f64 = 3.0;

/// A gap of more spreads over seeds than this (and no more than [`SHOWN_IN_SPREADS`]) is
/// "weak"; below it, "not shown".
pub(crate) const WEAK_IN_SPREADS: f64 = 1.0;

/// How a verdict decides, as reports and the README say it.
pub(crate) fn rule() -> String {
    format!(
        "batch norm at its smallest batch against itself at its largest and against the best \
         batch-free norm at the same batch; a gap counts in standard deviations over seeds \
         (seed spreads, the larger of the two settings'): the failure is shown when every gap \
         is beyond {SHOWN_IN_SPREADS}, weak when every gap is beyond {WEAK_IN_SPREADS}, else not \
         shown"
    )
}

/// The batch-free norms batch norm is compared with, by kind.
const BATCH_FREE: [&str; 2] = ["group", "layer"];

/// How clearly a gap shows over the spread over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Outcome {
    /// One seed on a side: no spread to measure the gap against.
    NoSpread,
    /// The gap is below one spread over seeds, or of the other sign.
    NotShown,
    /// Between one and [`SHOWN_IN_SPREADS`] spreads.
    Weak,
    /// Beyond [`SHOWN_IN_SPREADS`] spreads.
    Shown,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Self::NoSpread => "not measurable (one seed)",
            Self::NotShown => "not shown",
            Self::Weak => "weak",
            Self::Shown => "shown",
        }
    }
}

/// A gap between two settings' errors over seeds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Gap {
    /// The errors of the setting batch norm is compared with, in percent.
    pub other: Spread,
    /// What that setting is, in words: `` `group(groups=8)` at batch size 2 ``.
    pub other_name: String,
    /// Batch norm's mean error minus the other's, in points.
    pub points: f64,
    /// The larger of the two standard deviations over seeds; `None` with one seed.
    pub spread: Option<f64>,
}

impl Gap {
    /// The gap in spreads over seeds.
    pub(crate) fn in_spreads(&self) -> Option<f64> {
        self.spread.filter(|s| *s > 0.0).map(|s| self.points / s)
    }

    pub(crate) fn outcome(&self) -> Outcome {
        match (self.spread, self.in_spreads()) {
            (None, _) => Outcome::NoSpread,
            (Some(_), None) if self.points > 0.0 => Outcome::Shown,
            (Some(_), None) => Outcome::NotShown,
            (_, Some(k)) if k > SHOWN_IN_SPREADS => Outcome::Shown,
            (_, Some(k)) if k > WEAK_IN_SPREADS => Outcome::Weak,
            _ => Outcome::NotShown,
        }
    }

    fn clause(&self) -> String {
        let spreads = match self.in_spreads() {
            Some(k) => format!(", {k:.1} seed spreads"),
            None => String::new(),
        };
        format!(
            "against {:.2}% ({:.2}..{:.2}) for {}: {:+.2} points{spreads}",
            self.other.mean, self.other.min, self.other.max, self.other_name, self.points
        )
    }
}

/// The verdict on one batch norm: at its smallest normalization batch against itself at its
/// largest, and against the best batch-free norm at the same training batch size.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchVerdict {
    /// The norm's label at its smallest normalization batch.
    pub label: String,
    /// The examples it normalizes over there.
    pub examples: usize,
    /// The training batch size there.
    pub batch_size: usize,
    /// Its errors there over seeds, in percent.
    pub batch: Spread,
    /// Against the same norm at its largest normalization batch, when it has another.
    pub at_largest: Option<Gap>,
    /// Against the best batch-free norm at the same batch size, when the grid has one.
    pub against_batch_free: Option<Gap>,
}

impl BatchVerdict {
    /// The weaker of the two comparisons' outcomes: the failure shows only if batch norm at
    /// its smallest batch is worse than both itself at its largest and the batch-free norms.
    pub(crate) fn outcome(&self) -> Outcome {
        let gaps = [&self.at_largest, &self.against_batch_free];
        (gaps.iter().flat_map(|g| g.as_ref().map(Gap::outcome)))
            .min()
            .unwrap_or(Outcome::NoSpread)
    }

    /// The comparison's sentence.
    fn sentence(&self) -> String {
        let gaps: Vec<String> = [&self.at_largest, &self.against_batch_free]
            .iter()
            .flat_map(|g| g.as_ref().map(Gap::clause))
            .collect();
        let over = match self.examples == self.batch_size {
            true => format!("batch size {}", self.batch_size),
            false => format!(
                "ghost batches of {} in batches of {}",
                self.examples, self.batch_size
            ),
        };
        format!(
            "`{}` at {over} ends at {:.2}% error ({:.2}..{:.2}), {}: the failure is {}.",
            self.label,
            self.batch.mean,
            self.batch.min,
            self.batch.max,
            gaps.join("; "),
            self.outcome().word()
        )
    }

    /// True for the runs the verdict is computed from: the norm at its smallest normalization
    /// batch, and the batch-free norm at the same batch size.
    pub(crate) fn rests_on(&self, record: &RunRecord) -> bool {
        let same_batch = record.config.train.batch_size == self.batch_size;
        let label = norm_label(record);
        let free = self.against_batch_free.as_ref();
        same_batch
            && (label == self.label
                || free.is_some_and(|g| g.other_name.starts_with(&format!("`{label}`"))))
    }
}

/// The examples batch norm normalizes over in training: its ghost batch, or the whole batch.
pub(crate) fn normalization_batch(record: &RunRecord) -> Option<usize> {
    let batch_size = record.config.train.batch_size;
    match record.config.model.norm() {
        NormConfig::Batch(config) => Some(config.ghost_batch.unwrap_or(batch_size).min(batch_size)),
        _ => None,
    }
}

/// Batch norm's config without its ghost batch: the norm whose batches a ghost size varies.
fn family(record: &RunRecord) -> Option<NormConfig> {
    match record.config.model.norm() {
        NormConfig::Batch(config) => Some(NormConfig::Batch(config.clone().with_ghost_batch(None))),
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

/// A setting's runs and their errors over seeds, in percent.
type Setting<'a> = (Vec<&'a RunRecord>, Spread);

/// The gap from `batch` to `other`, named `other_name`.
fn gap(batch: &Setting, other: &Setting, other_name: String) -> Gap {
    Gap {
        other: other.1,
        other_name,
        points: batch.1.mean - other.1.mean,
        spread: seed_std(&batch.0)
            .zip(seed_std(&other.0))
            .map(|(a, b)| a.max(b)),
    }
}

/// Every setting of `set` with a final error, and its errors over seeds.
fn scored_settings(set: &ResultSet) -> Vec<Setting<'_>> {
    settings(set)
        .into_iter()
        .filter_map(|(_, runs)| {
            let errors = Spread::of(runs.iter().filter_map(|r| final_error(r)))?;
            Some((runs, errors))
        })
        .collect()
}

/// One verdict per batch norm of `set` (its ghost-batch variants counted as one), when nothing
/// but the norm, the batch size and the seed varies.
pub(crate) fn batch_verdicts(set: &ResultSet) -> Vec<BatchVerdict> {
    if !(set.other_axes(&[AxisKey::Norm, AxisKey::Seed, AxisKey::BatchSize])).is_empty() {
        return Vec::new();
    }
    let settings = scored_settings(set);
    let families: Vec<NormConfig> =
        crate::result_set::distinct(settings.iter().filter_map(|(runs, _)| family(runs[0])));
    families
        .into_iter()
        .filter_map(|norm| {
            let own: Vec<&Setting> = (settings.iter())
                .filter(|(runs, _)| family(runs[0]).as_ref() == Some(&norm))
                .collect();
            let examples = |s: &Setting| normalization_batch(s.0[0]).unwrap_or(usize::MAX);
            let smallest = *own.iter().min_by_key(|s| examples(s))?;
            let largest = *own.iter().max_by_key(|s| examples(s))?;
            let batch_size = smallest.0[0].config.train.batch_size;
            let at_largest = (examples(largest) > examples(smallest)).then(|| {
                let name = format!(
                    "`{}` normalizing over {} examples",
                    norm_label(largest.0[0]),
                    examples(largest)
                );
                gap(smallest, largest, name)
            });
            let free = settings.iter().filter(|(runs, _)| {
                let kind = runs[0].config.model.norm().kind();
                runs[0].config.train.batch_size == batch_size && BATCH_FREE.contains(&kind)
            });
            let best = free.min_by(|a, b| a.1.mean.total_cmp(&b.1.mean));
            let against_batch_free = best.map(|other| {
                let name = format!("`{}` at batch size {batch_size}", norm_label(other.0[0]));
                gap(smallest, other, name)
            });
            // A verdict on small batches needs batch norm at a larger one to compare with.
            at_largest.is_some().then(|| BatchVerdict {
                label: norm_label(smallest.0[0]),
                examples: examples(smallest),
                batch_size,
                batch: smallest.1,
                at_largest,
                against_batch_free,
            })
        })
        .collect()
}

/// The verdict sentences at the top of the report: empty unless [`gradient_verdict`],
/// [`batching_verdict`] or [`batch_verdicts`] has one.
pub(crate) fn headline(set: &ResultSet) -> String {
    if let Some(verdict) = gradient_verdict(set) {
        return format!(
            "**Verdict** ({}). {}\n\n",
            gradient_rule(),
            verdict.sentence()
        );
    }
    if let Some(verdict) = batching_verdict(set) {
        return format!(
            "**Verdict** ({}). {}\n\n",
            batching_rule(),
            verdict.sentence()
        );
    }
    let verdicts = batch_verdicts(set);
    if verdicts.is_empty() {
        return String::new();
    }
    let no_batch_of_one = set.records.iter().any(|r| {
        r.status == Status::Impossible
            && normalization_batch(r).is_some()
            && r.config.train.batch_size == 1
    });
    let mut text = format!("**Verdict** ({}). {}", rule(), verdict_sentences(&verdicts));
    if no_batch_of_one {
        text.push_str(" At batch size 1 batch norm cannot train at all.");
    }
    text.push_str("\n\n");
    text
}

/// The outcome and sentences of `set`'s verdicts for the README; none without a verdict.
pub(crate) fn summary(set: &ResultSet) -> Option<(Outcome, String)> {
    if let Some(verdict) = gradient_verdict(set) {
        return Some((verdict.outcome(), verdict.sentence()));
    }
    if let Some(verdict) = batching_verdict(set) {
        return Some((verdict.outcome(), verdict.sentence()));
    }
    let verdicts = batch_verdicts(set);
    let outcome = verdicts.iter().map(BatchVerdict::outcome).max()?;
    Some((outcome, verdict_sentences(&verdicts)))
}

/// The sentences of `verdicts`, one after another.
pub(crate) fn verdict_sentences(verdicts: &[BatchVerdict]) -> String {
    let sentences: Vec<String> = verdicts.iter().map(BatchVerdict::sentence).collect();
    sentences.join(" ")
}

/// The verdict on recurrent BN's Figure 1: at initialization, how many orders of magnitude the
/// gradient a quarter of the way back (of the farthest distance every measurement reaches) lies
/// below the last step's, for batch norm at its largest initial gamma against its smallest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GradientVerdict {
    /// Steps back from the last at which the gradients are compared.
    pub back: usize,
    /// The label and the log10 ratios over seeds of batch norm at its largest gamma.
    pub high: (String, Spread),
    /// The same at its smallest gamma.
    pub low: (String, Spread),
    /// The larger of the two standard deviations of the log10 ratios over seeds.
    pub spread: Option<f64>,
}

/// log10 of the smallest positive float32: a ratio that underflowed to 0 lies at most there.
const FLOAT32_FLOOR_LOG10: f64 = -44.85;

impl GradientVerdict {
    /// Orders of magnitude from the large gamma's gradient up to the small gamma's.
    fn orders(&self) -> f64 {
        self.low.1.mean - self.high.1.mean
    }

    pub(crate) fn outcome(&self) -> Outcome {
        Gap {
            other: self.high.1,
            other_name: String::new(),
            points: self.orders(),
            spread: self.spread,
        }
        .outcome()
    }

    fn sentence(&self) -> String {
        let side = |(label, logs): &(String, Spread)| {
            format!(
                "`{label}`'s 10^{:.1} ({:.1}..{:.1})",
                logs.mean, logs.min, logs.max
            )
        };
        let spreads = match self.spread.filter(|s| *s > 0.0) {
            Some(s) => format!(", {:.1} seed spreads", self.orders() / s),
            None => String::new(),
        };
        format!(
            "At initialization, the gradient {} steps back, relative to the last step's (log10, \
             mean over seeds, min..max), is {} against {}: {:.1} orders of magnitude apart{spreads}: \
             the vanishing at the larger gamma is {}.",
            self.back,
            side(&self.high),
            side(&self.low),
            self.orders(),
            self.outcome().word()
        )
    }
}

/// The rule of [`BatchingVerdict`], as the report says it.
pub(crate) fn batching_rule() -> String {
    format!(
        "each norm with batches grouped by class against itself with shuffled batches; a gap \
         counts in standard deviations over seeds (the larger of the two settings'): shown \
         beyond {SHOWN_IN_SPREADS}, weak beyond {WEAK_IN_SPREADS}, else not shown"
    )
}

/// The rule of [`GradientVerdict`], as the report says it.
pub(crate) fn gradient_rule() -> String {
    format!(
        "batch norm's gradient at initialization, relative to the last step's, at its largest \
         initial gamma against its smallest; the gap counts in standard deviations over seeds of \
         the log10 ratios: shown beyond {SHOWN_IN_SPREADS}, weak beyond {WEAK_IN_SPREADS}; a \
         ratio that underflowed to 0 in float32 counts as 10^{FLOAT32_FLOOR_LOG10}, its largest \
         possible value"
    )
}

/// The gradient-flow verdict of `set`: when batch norm's initial gamma varies and the gradient
/// was measured at initialization.
pub(crate) fn gradient_verdict(set: &ResultSet) -> Option<GradientVerdict> {
    let gamma = |r: &RunRecord| match r.config.model.norm() {
        NormConfig::Batch(config) => Some(config.gamma_init),
        _ => None,
    };
    let initial = |r: &RunRecord| {
        let flow = r.gradient_flow.iter().find(|flow| flow.step == 0)?;
        Some(flow.relative_to_last()).filter(|ratios| ratios.len() >= 2)
    };
    let measured: Vec<&RunRecord> = set
        .records
        .iter()
        .filter(|r| gamma(r).is_some() && initial(r).is_some())
        .collect();
    let farthest = measured
        .iter()
        .filter_map(|r| initial(r))
        .map(|f| f.len() - 1)
        .min()?;
    let back = farthest / 4;
    let logs = |runs: &[&&RunRecord]| -> Option<Spread> {
        Spread::of(runs.iter().filter_map(|r| {
            let (_, ratio) = initial(r)?.into_iter().find(|(b, _)| *b == back)?;
            Some(match ratio > 0.0 {
                true => ratio.log10(),
                false => FLOAT32_FLOOR_LOG10,
            })
        }))
    };
    let std = |runs: &[&&RunRecord], spread: &Spread| -> Option<f64> {
        let logs: Vec<f64> = runs
            .iter()
            .filter_map(|r| initial(r)?.into_iter().find(|(b, _)| *b == back))
            .map(|(_, ratio)| {
                if ratio > 0.0 {
                    ratio.log10()
                } else {
                    FLOAT32_FLOOR_LOG10
                }
            })
            .collect();
        let squares: f64 = logs.iter().map(|l| (l - spread.mean).powi(2)).sum();
        (logs.len() >= 2).then(|| (squares / (logs.len() - 1) as f64).sqrt())
    };
    let by_gamma = |pick: fn(f64, f64) -> bool| -> Option<(String, Spread, Option<f64>)> {
        let target = measured
            .iter()
            .filter_map(|r| gamma(r))
            .reduce(|a, b| if pick(a, b) { a } else { b })?;
        let runs: Vec<&&RunRecord> = measured
            .iter()
            .filter(|r| gamma(r) == Some(target))
            .collect();
        let spread = logs(&runs)?;
        Some((norm_label(runs[0]), spread, std(&runs, &spread)))
    };
    let (high_label, high, high_std) = by_gamma(|a, b| a > b)?;
    let (low_label, low, low_std) = by_gamma(|a, b| a < b)?;
    (high_label != low_label).then(|| GradientVerdict {
        back,
        high: (high_label, high),
        low: (low_label, low),
        spread: high_std.zip(low_std).map(|(a, b)| a.max(b)),
    })
}

/// The verdict on non-i.i.d. batches (Batch Renorm, section 4.3): each norm's error with batches
/// grouped by class against the same norm with shuffled batches. The failure is batch norm's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchingVerdict {
    /// How the non-i.i.d. batches were drawn, as the config writes it.
    pub batching: String,
    /// Per norm, in grid order: its label, its errors with grouped batches and its gap to
    /// itself with shuffled batches.
    pub gaps: Vec<(String, Spread, Gap)>,
}

impl BatchingVerdict {
    /// Batch norm's gap: its error rising with grouped batches is the failure.
    pub(crate) fn outcome(&self) -> Outcome {
        let batch_norm = self.gaps.iter().find(|(label, ..)| label == "batch");
        batch_norm.map_or(Outcome::NoSpread, |(.., gap)| gap.outcome())
    }

    fn sentence(&self) -> String {
        let clauses: Vec<String> = self
            .gaps
            .iter()
            .map(|(label, grouped, gap)| {
                let spreads = match gap.in_spreads() {
                    Some(k) => format!(", {k:.1} seed spreads"),
                    None => String::new(),
                };
                let shuffled = &gap.other;
                format!(
                    "`{label}` {:.2}% ({:.2}..{:.2}) against {:.2}% ({:.2}..{:.2}) shuffled: \
                     {:+.2} points{spreads} ({})",
                    grouped.mean,
                    grouped.min,
                    grouped.max,
                    shuffled.mean,
                    shuffled.min,
                    shuffled.max,
                    gap.points,
                    gap.outcome().word()
                )
            })
            .collect();
        format!(
            "With batches = {}, each norm's error against its own with shuffled batches: {}. \
             The failure of batch norm is {}.",
            self.batching,
            clauses.join("; "),
            self.outcome().word()
        )
    }
}

/// The verdict of a set whose only axes besides the norm and the seed are the batches, with
/// shuffled batches among them.
pub(crate) fn batching_verdict(set: &ResultSet) -> Option<BatchingVerdict> {
    let others = set.other_axes(&[AxisKey::Norm, AxisKey::Seed]);
    if others != [AxisKey::Batches] {
        return None;
    }
    let settings = scored_settings(set);
    let batching = |s: &Setting| s.0[0].config.train.batches;
    let grouped = settings
        .iter()
        .map(batching)
        .find(|b| *b != Batching::Shuffled)?;
    let gaps: Vec<(String, Spread, Gap)> = settings
        .iter()
        .filter(|s| batching(s) == grouped)
        .filter_map(|s| {
            let label = norm_label(s.0[0]);
            let shuffled = settings
                .iter()
                .find(|o| batching(o) == Batching::Shuffled && norm_label(o.0[0]) == label)?;
            Some((label, s.1, gap(s, shuffled, "shuffled".into())))
        })
        .collect();
    let batching = set
        .records
        .iter()
        .find(|r| r.config.train.batches == grouped)?;
    (!gaps.is_empty()).then(|| BatchingVerdict {
        batching: batching
            .label(&AxisKey::Batches)
            .unwrap_or_default()
            .to_string(),
        gaps,
    })
}
