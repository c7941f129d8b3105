//! What every consumer of run records reads off them: labels, final errors, spreads over
//! seeds, facets, errors by length and percentile tracks. The plots and the report both use
//! these, so that the report's numbers are exactly the plotted ones.

use crate::config::Experiment;
use crate::results::{Eval, RunRecord, Status};

/// The norm label of a run: its `norm` axis value, or the kind of its one norm.
pub(crate) fn norm_label(record: &RunRecord) -> String {
    record
        .axis("norm")
        .map(str::to_string)
        .unwrap_or_else(|| record.config.model.norm().kind().to_string())
}

/// The norm labels of the experiment's grid in grid order, whether or not their runs finished,
/// so that series order and colours never depend on progress.
pub(crate) fn norm_labels(experiment: &Experiment) -> Vec<String> {
    let index = experiment.axis("norm");
    distinct(experiment.points.iter().map(|point| match index {
        Some(i) => point.labels[i].clone(),
        None => point.run.model.norm().kind().to_string(),
    }))
}

/// The kind of a norm label: `group(groups=4)` is a `group`.
pub(crate) fn norm_kind(label: &str) -> &str {
    label.split('(').next().unwrap_or(label)
}

/// The distinct values of axis `name` over the grid, in grid order; empty without that axis.
pub(crate) fn axis_values(experiment: &Experiment, name: &str) -> Vec<String> {
    match experiment.axis(name) {
        Some(i) => distinct(experiment.points.iter().map(|p| p.labels[i].clone())),
        None => Vec::new(),
    }
}

/// True when the experiment has axis `name` with more than one value.
pub(crate) fn varies(experiment: &Experiment, name: &str) -> bool {
    axis_values(experiment, name).len() > 1
}

/// The axes with more than one value, except `exclude`, in axis order: what splits runs into
/// panels (plots) or groups (report) beside the axis being looked at.
pub(crate) fn other_axes(experiment: &Experiment, exclude: &[&str]) -> Vec<String> {
    experiment
        .axes
        .iter()
        .map(|axis| axis.name.clone())
        .filter(|name| !exclude.contains(&name.as_str()) && varies(experiment, name))
        .collect()
}

/// `record`'s values of `axes`, as `name=value, ...`; empty for no axes.
pub(crate) fn describe(record: &RunRecord, axes: &[String]) -> String {
    axes.iter()
        .map(|name| format!("{name}={}", record.axis(name).unwrap_or("?")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value of axis `name` of `record`; the batch size is known even without its axis.
pub(crate) fn axis_label(record: &RunRecord, name: &str) -> Option<String> {
    record
        .axis(name)
        .map(str::to_string)
        .or_else(|| (name == "batch_size").then(|| record.config.train.batch_size.to_string()))
}

/// How many of the last evaluations a run's final error is the median of.
pub(crate) const FINAL_EVALS: usize = 3;

/// The final validation error of a finished run, in percent: the median of its last
/// [`FINAL_EVALS`] evaluations, so that one noisy last step does not decide a comparison.
/// Diverged and impossible runs have no result, whatever they evaluated before stopping.
pub(crate) fn final_error(record: &RunRecord) -> Option<f64> {
    median_of_last_evals(record, |eval| Some(eval.valid_error))
}

/// The final train-mode (batch statistics) error of a finished run, in percent, taken as
/// [`final_error`] is.
pub(crate) fn final_train_mode_error(record: &RunRecord) -> Option<f64> {
    median_of_last_evals(record, |eval| eval.train_mode_error)
}

fn median_of_last_evals(record: &RunRecord, error: impl Fn(&Eval) -> Option<f32>) -> Option<f64> {
    finished_eval(record)?;
    let mut last: Vec<f64> = record
        .evals
        .iter()
        .rev()
        .take(FINAL_EVALS)
        .map_while(|eval| error(eval).map(|e| f64::from(e) * 100.0))
        .collect();
    last.sort_by(f64::total_cmp);
    let mid = last.len() / 2;
    match last.len() {
        0 => None,
        n if n % 2 == 1 => Some(last[mid]),
        _ => Some((last[mid - 1] + last[mid]) / 2.0),
    }
}

/// The validation error of a finished run's last evaluation alone, in percent: what the
/// PreciseBN and folded scores, made at that evaluation only, are compared with.
pub(crate) fn last_eval_error(record: &RunRecord) -> Option<f64> {
    finished_eval(record).map(|eval| f64::from(eval.valid_error) * 100.0)
}

/// The final error with PreciseBN's statistics of a finished run, in percent.
pub(crate) fn final_precise_error(record: &RunRecord) -> Option<f64> {
    finished_eval(record)
        .and_then(|eval| eval.precise_error)
        .map(|error| f64::from(error) * 100.0)
}

/// The final error of the folded model of a finished run, in percent.
pub(crate) fn final_folded_error(record: &RunRecord) -> Option<f64> {
    finished_eval(record)
        .and_then(|eval| eval.folded_error)
        .map(|error| f64::from(error) * 100.0)
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

/// The distinct items in first-seen order.
pub(crate) fn distinct<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
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

/// What a run's axis is called in a sentence or on a plot axis.
pub(crate) fn describe_axis(name: &str) -> String {
    match name {
        "batch_size" => "batch size".into(),
        "lr" => "learning rate".into(),
        "init_scale" => "weight init scale".into(),
        "l1" => "L1 penalty".into(),
        "l2" => "L2 penalty".into(),
        other => other.replace('_', " "),
    }
}

/// The distinct values of `axes` over the records, in record (grid) order: the facets that
/// split runs into panels (plots) or groups (report).
pub(crate) fn facets(records: &[RunRecord], axes: &[String]) -> Vec<String> {
    distinct(records.iter().map(|r| describe(r, axes)))
}

/// The records whose values of `axes` are described by `facet`.
pub(crate) fn in_facet<'r: 'q, 'q>(
    records: &'r [RunRecord],
    axes: &'q [String],
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
/// whose score is the ordinary validation score unless measured apart; empty for a run
/// without such evaluations.
pub(crate) fn scores_by_length(record: &RunRecord) -> Vec<LengthScore> {
    let Some(eval) = finished_eval(record) else {
        return Vec::new();
    };
    let score = |length, loss: f32, error: f32| LengthScore {
        length,
        error: f64::from(error) * 100.0,
        bits: f64::from(loss) / std::f64::consts::LN_2,
    };
    let mut scores: Vec<LengthScore> = eval
        .by_length
        .iter()
        .map(|l| score(l.length, l.loss, l.error))
        .collect();
    let trained = record.config.data.seq_len;
    if !scores.is_empty() && !scores.iter().any(|s| s.length == trained) {
        scores.push(score(trained, eval.valid_loss, eval.valid_error));
    }
    scores
}

/// The runs whose activation percentiles are shown: for each norm, its first probed run of the
/// first seed (in grid order), so that there is one column per norm however many axes vary.
pub(crate) fn percentile_runs<'a>(
    experiment: &Experiment,
    records: &'a [RunRecord],
) -> Vec<&'a RunRecord> {
    let first_seed = axis_values(experiment, "seed").into_iter().next();
    let probed: Vec<&RunRecord> = records
        .iter()
        .filter(|r| first_seed.is_none() || r.axis("seed") == first_seed.as_deref())
        .filter(|r| !unit_zero(r, None).is_empty())
        .collect();
    norm_labels(experiment)
        .iter()
        .filter_map(|norm| probed.iter().copied().find(|r| norm_label(r) == *norm))
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
    fn the_final_error_is_the_median_of_the_last_three_evaluations() {
        let (_, records) = crate::fixtures::fixture();
        let mut record = records
            .into_iter()
            .find(|r| r.status == Status::Finished)
            .unwrap();
        let last = record.evals[0].clone();
        record.evals = [0.50, 0.10, 0.30, 0.20]
            .into_iter()
            .map(|error| Eval {
                valid_error: error,
                train_mode_error: Some(error + 0.01),
                ..last.clone()
            })
            .collect();
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-4;
        assert!(
            close(final_error(&record), 20.0),
            "{:?}",
            final_error(&record)
        );
        assert!(close(final_train_mode_error(&record), 21.0));
        assert!(close(last_eval_error(&record), 20.0));
        record.evals.drain(..2);
        assert!(
            close(final_error(&record), 25.0),
            "two evaluations: their mean"
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
