//! What every consumer of run records reads off them: final scores, spreads over seeds,
//! facets, scores by length and percentile tracks. The plots and the report both use these, so
//! that the report's numbers are exactly the plotted ones.

use crate::axes::AxisKey;
use crate::config::final_window_start;
use crate::result_set::ResultSet;
use crate::results::{Eval, EvalMode, RunRecord, Status};

/// `record`'s labels on `axes`, as `name=label, ...`; empty for no axes.
pub(crate) fn describe(record: &RunRecord, axes: &[AxisKey]) -> String {
    axes.iter()
        .map(|key| format!("{key}={}", record.label(key).unwrap_or("?")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The final validation error of a finished run in eval mode, in percent: see
/// [`final_score`].
pub(crate) fn final_error(record: &RunRecord) -> Option<f64> {
    final_score(record, EvalMode::Eval)
}

/// What a run's error is, as a report says it.
pub(crate) const FINAL_METRIC: &str = "the median of the evaluations inside the last 10% of \
                                       training (three unless the config asks otherwise)";

/// The final error of a finished run scored in `mode`, in percent: the median of its
/// evaluations in that mode inside the last [`FINAL_WINDOW`] of its training, so that one
/// noisy last step does not decide a comparison and no evaluation from much earlier does
/// either (PreciseBN and folded scores exist at the last evaluation only). Diverged and
/// impossible runs have no result, whatever they evaluated before stopping.
pub(crate) fn final_score(record: &RunRecord, mode: EvalMode) -> Option<f64> {
    finished_eval(record)?;
    let start = final_window_start(record.steps);
    let mut last: Vec<f64> = record
        .evals
        .iter()
        .filter(|eval| eval.step >= start)
        .filter_map(|eval| eval.score(mode).map(|s| f64::from(s.error) * 100.0))
        .collect();
    last.sort_by(f64::total_cmp);
    let mid = last.len() / 2;
    match last.len() {
        0 => None,
        n if n % 2 == 1 => Some(last[mid]),
        _ => Some((last[mid - 1] + last[mid]) / 2.0),
    }
}

/// The validation error of a finished run's last evaluation in `mode`, in percent: what the
/// PreciseBN and folded scores, made at that evaluation only, are compared with.
pub(crate) fn last_score(record: &RunRecord, mode: EvalMode) -> Option<f64> {
    finished_eval(record)?
        .score(mode)
        .map(|s| f64::from(s.error) * 100.0)
}

pub(crate) fn finished_eval(record: &RunRecord) -> Option<&Eval> {
    (record.status == Status::Finished)
        .then(|| record.final_eval())
        .flatten()
}

/// The median step time of a run that trained at least one step, in milliseconds.
pub(crate) fn step_ms(record: &RunRecord) -> Option<f64> {
    (record.step_seconds > 0.0 && record.step_seconds.is_finite())
        .then_some(record.step_seconds * 1e3)
}

/// The median time a run's training step spent in its norm layers, forward and backward, in
/// milliseconds, when it was timed (`train.time_norms`).
pub(crate) fn norm_ms(record: &RunRecord) -> Option<f64> {
    (record.status == Status::Finished)
        .then_some(record.norm_seconds?)
        .map(|t| t.total * 1e3)
}

/// Mean, minimum and maximum of some values (runs over seeds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spread {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

impl Spread {
    /// None for no values.
    pub(crate) fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let values: Vec<f64> = values.into_iter().collect();
        (!values.is_empty()).then(|| Self {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            count: values.len(),
        })
    }

    /// True when the two min..max ranges share a value: the difference of the means is then
    /// within the spread over seeds.
    pub(crate) fn overlaps(&self, other: &Self) -> bool {
        self.min <= other.max && other.min <= self.max
    }
}

/// A duration as a reader wants it: `42.0 s`, `3 min 12 s`, `1 h 05 min`.
pub(crate) fn fmt_duration(seconds: f64) -> String {
    let whole = seconds.round() as u64;
    match seconds {
        s if s < 60.0 => format!("{s:.1} s"),
        s if s < 3600.0 => format!("{} min {} s", whole / 60, whole % 60),
        _ => format!("{} h {:02} min", whole / 3600, whole % 3600 / 60),
    }
}

/// A number with at most four significant digits and no trailing zeros: `0.001`, `64`, `2.5`.
pub(crate) fn fmt_number(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let decimals = (3 - value.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{value:.decimals$}");
    match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.').to_string(),
        false => text,
    }
}

/// The distinct values of `axes` over the records, in record (grid) order: the facets that
/// split runs into panels (plots) or groups (report).
pub(crate) fn facets(records: &[RunRecord], axes: &[AxisKey]) -> Vec<String> {
    crate::result_set::distinct(records.iter().map(|r| describe(r, axes)))
}

/// The records whose values of `axes` are described by `facet`.
pub(crate) fn in_facet<'r: 'q, 'q>(
    records: &'r [RunRecord],
    axes: &'q [AxisKey],
    facet: &'q str,
) -> impl Iterator<Item = &'r RunRecord> + 'q {
    records.iter().filter(move |r| describe(r, axes) == facet)
}

/// A finished run's score on evaluation windows of one length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LengthScore {
    pub length: usize,
    /// Share of wrong next-character predictions, in percent.
    pub error: f64,
    /// Mean cross-entropy in bits per character: the language model's own measure.
    pub bits: f64,
}

/// The scores of a finished run evaluated at several lengths, including the training length,
/// whose score is the eval-mode score unless measured apart; empty for a run without such
/// evaluations.
pub(crate) fn scores_by_length(record: &RunRecord) -> Vec<LengthScore> {
    let Some(eval) = finished_eval(record) else {
        return Vec::new();
    };
    let score = |length, score: crate::results::Score| LengthScore {
        length,
        error: f64::from(score.error) * 100.0,
        bits: f64::from(score.loss) / std::f64::consts::LN_2,
    };
    let mut scores: Vec<LengthScore> = eval
        .scores
        .iter()
        .filter_map(|(mode, s)| match mode {
            EvalMode::Length(length) => Some(score(*length, *s)),
            _ => None,
        })
        .collect();
    let trained = record.config.data.seq_len;
    if !scores.is_empty()
        && !scores.iter().any(|s| s.length == trained)
        && let Some(own) = eval.score(EvalMode::Eval)
    {
        scores.push(score(trained, own));
    }
    scores
}

/// The runs whose activation percentiles are shown: for each series, its first probed run of
/// the first seed (in grid order), so that there is one column per norm however many axes
/// vary.
pub(crate) fn percentile_runs(set: &ResultSet) -> Vec<&RunRecord> {
    let first_seed = set.labels(&AxisKey::Seed).into_iter().next();
    let probed: Vec<&RunRecord> = set
        .records
        .iter()
        .filter(|r| first_seed.is_none() || r.label(&AxisKey::Seed) == first_seed.as_deref())
        .filter(|r| !unit_zero(r, None).is_empty())
        .collect();
    set.series()
        .iter()
        .filter_map(|(series, _)| {
            probed
                .iter()
                .copied()
                .find(|r| crate::result_set::series_label(r) == *series)
        })
        .collect()
}

/// `(step, [p15, p50, p85])` of unit 0 after the norm at `site` (every site when None).
pub(crate) fn unit_zero(record: &RunRecord, site: Option<&str>) -> Vec<(usize, [f32; 3])> {
    record
        .probes
        .iter()
        .flat_map(|probe| {
            probe
                .sites
                .iter()
                .filter(move |s| site.is_none_or(|site| s.site == site))
                .filter_map(move |s| Some((probe.step, *s.after.percentiles.first()?)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_error_is_the_median_of_the_evaluations_in_the_last_tenth() {
        let set = crate::fixtures::fixture();
        let mut record = (set.records.into_iter())
            .find(|r| r.status == Status::Finished)
            .unwrap();
        let last = record.evals[0].clone();
        let score = |error: f32| crate::results::Score { loss: 1.0, error };
        // Steps 40 (outside the last 10% of the run's 100 steps), 90, 95 and 100.
        record.steps = 100;
        record.evals = [(40, 0.50), (90, 0.10), (95, 0.30), (100, 0.20)]
            .into_iter()
            .map(|(step, error)| Eval {
                step,
                scores: [
                    (EvalMode::Eval, score(error)),
                    (EvalMode::TrainMode, score(error + 0.01)),
                ]
                .into(),
                ..last.clone()
            })
            .collect();
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-4;
        assert!(
            close(final_error(&record), 20.0),
            "{:?}",
            final_error(&record)
        );
        assert!(close(final_score(&record, EvalMode::TrainMode), 21.0));
        assert!(close(last_score(&record, EvalMode::Eval), 20.0));
        record.evals.drain(..2);
        assert!(
            close(final_error(&record), 25.0),
            "two evaluations in the window: their mean"
        );
        record.status = Status::Diverged;
        assert_eq!(
            final_error(&record),
            None,
            "no result without a finished run"
        );
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(fmt_number(0.001), "0.001");
        assert_eq!(fmt_number(64.0), "64");
        assert_eq!(fmt_number(0.1 + 0.2), "0.3");
        assert_eq!(fmt_number(1.25), "1.25");
    }
}
