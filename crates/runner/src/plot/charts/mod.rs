//! The charts, one file each, and what they share: a chart of spreads over seeds vs an axis,
//! the placement of axis values along x, and the captions' common sentences.

mod by_length;
mod error_vs_axis;
mod gradient_flow;
mod loss_curves;
mod percentiles;
mod step_time;
mod train_vs_eval;

pub(crate) use by_length::{bits_vs_length, error_vs_length};
pub(crate) use error_vs_axis::error_vs_axis;
pub(crate) use gradient_flow::gradient_flow;
#[cfg(test)]
pub(crate) use loss_curves::CURVE_POINTS;
#[cfg(test)]
pub(crate) use loss_curves::mean_band;
pub(crate) use loss_curves::{band_per_norm, loss_curves};
pub(crate) use percentiles::percentiles;
pub(crate) use step_time::step_time;
pub(crate) use train_vs_eval::train_vs_eval;

use crate::analysis::{Spread, fmt_number};
use crate::axes::AxisKey;
use crate::plot::axis::Axis;
use crate::plot::figure::Stroke;
use crate::plot::figure::{
    Figure, LegendEntry, Look, NEUTRAL, Point, Reference, Series, robust_extent,
};
use crate::plot::{Context, Plot};
use crate::result_set::{distinct, series_label};
use crate::results::{RunRecord, Status};

/// The sentence that says how a figure is split into panels.
pub(crate) fn facet_sentence(axes: &[AxisKey]) -> String {
    match axes {
        [] => String::new(),
        [one] => format!(" One panel per {}.", one.describe()),
        many => {
            let names: Vec<&str> = many.iter().map(AxisKey::name).collect();
            format!(" One panel per combination of {}.", names.join(", "))
        }
    }
}

/// One legend entry per used slot: a norm, the measure it is drawn with (if the plot has
/// several), how it looks and its place among the norms.
pub(crate) fn legend<'s>(
    context: &Context,
    slots: impl IntoIterator<Item = (&'s String, Option<&'s str>, Look)>,
    used: &[bool],
) -> Vec<LegendEntry> {
    slots
        .into_iter()
        .zip(used)
        .filter(|(_, used)| **used)
        .map(|((norm, suffix, look), _)| LegendEntry {
            label: match suffix {
                Some(suffix) => format!("{norm}: {suffix}"),
                None => norm.clone(),
            },
            color: context.palette.color(norm),
            look,
            variant: context.variant(norm),
        })
        .collect()
}

/// The legend of a chart of bands: one entry per norm with a run that `drawn` says is on the
/// chart, and the note on what lines and bands stand for.
pub(crate) fn band_legend(
    context: &Context,
    drawn: impl Fn(&RunRecord) -> bool,
) -> Vec<LegendEntry> {
    let used: Vec<bool> = context
        .series
        .iter()
        .map(|norm| {
            context
                .records
                .iter()
                .any(|r| series_label(r) == *norm && drawn(r))
        })
        .collect();
    let slots = context.series.iter().map(|norm| (norm, None, Look::Band));
    let mut entries = legend(context, slots, &used);
    entries.push(LegendEntry::note(
        "line: mean over seeds; band: min to max over seeds",
    ));
    entries
}

/// The legend's note on what a spread plot's marks stand for.
pub(crate) fn marks_note() -> LegendEntry {
    LegendEntry::note("marker: mean over seeds; bar: min to max; dot: each run")
}

/// One quantity drawn for every norm of a [`SpreadPlot`].
pub(crate) struct Measure<'a> {
    /// Added to the norm label in the legend, e.g. `eval mode`; None for a plot's only measure.
    pub(crate) name: Option<&'a str>,
    pub(crate) stroke: Stroke,
    /// The `(x, value)` pairs one run contributes.
    pub(crate) values: &'a dyn Fn(&RunRecord) -> Vec<(f64, f64)>,
}

/// A plot of measures vs x: one panel per value of `facet_axes`, one series per norm and
/// measure with the mean over runs at each x and bars from min to max.
pub(crate) struct SpreadPlot<'a> {
    pub(crate) file: String,
    pub(crate) title: String,
    pub(crate) caption: String,
    pub(crate) x: Axis,
    pub(crate) y_label: &'a str,
    /// Start the value axis at zero (times), rather than near the smallest value (errors).
    pub(crate) from_zero: bool,
    /// Join the markers by lines: for ordered x values, not for categories.
    pub(crate) joined: bool,
    pub(crate) facet_axes: Vec<AxisKey>,
    pub(crate) norms: Vec<String>,
    pub(crate) measures: Vec<Measure<'a>>,
    /// Where runs without a result (diverged or impossible) go on x, drawn as crosses in a
    /// strip above the values; None to leave such runs out.
    pub(crate) failed_x: Option<&'a XPlacement>,
    /// A line across every panel: chance level on an error plot.
    pub(crate) reference: Option<Reference>,
    /// Shift each norm's markers a little sideways so that norms at the same x do not hide each
    /// other; false when x gives every norm a place of its own (only measures are shifted).
    pub(crate) dodge_norms: bool,
}

pub(crate) fn spread_plot(context: &Context, spec: SpreadPlot) -> Option<Plot> {
    let slots = spec.norms.len() * spec.measures.len();
    let mut used = vec![false; slots];
    let mut failed: Vec<&RunRecord> = Vec::new();
    let mut panels = Vec::new();
    for facet in context.facets(&spec.facet_axes) {
        let runs: Vec<&RunRecord> = context.in_facet(&spec.facet_axes, &facet).collect();
        let mut series = Vec::new();
        for (n, norm) in spec.norms.iter().enumerate() {
            let own: Vec<&RunRecord> = runs
                .iter()
                .copied()
                .filter(|r| series_label(r) == *norm)
                .collect();
            let color = context.palette.color(norm);
            for (m, measure) in spec.measures.iter().enumerate() {
                let slot = n * spec.measures.len() + m;
                let shift = match spec.dodge_norms {
                    true => dodge(slot, slots),
                    false => dodge(m, spec.measures.len()),
                };
                let pairs: Vec<(f64, f64)> = own.iter().flat_map(|r| (measure.values)(r)).collect();
                let points = spread_points(pairs.iter().copied());
                if !points.is_empty() {
                    used[slot] = true;
                    let look = Look::Marks {
                        stroke: measure.stroke,
                        joined: spec.joined,
                    };
                    let mut marks = Series::new(color, look, context.variant(norm), points);
                    marks.dodge = shift;
                    marks.runs = pairs.into_iter().filter(|(_, v)| v.is_finite()).collect();
                    series.push(marks);
                }
            }
            let Some(placement) = spec.failed_x else {
                continue;
            };
            let without_result: Vec<&RunRecord> = own
                .iter()
                .copied()
                .filter(|r| r.status != Status::Finished)
                .collect();
            let xs = distinct(without_result.iter().filter_map(|r| placement.of(r)));
            if !xs.is_empty() {
                failed.extend(without_result);
                let points = xs.into_iter().map(Point::without_value).collect();
                let mut crosses = Series::new(color, Look::Failed, context.variant(norm), points);
                crosses.dodge = dodge(n * spec.measures.len(), slots);
                series.push(crosses);
            }
        }
        panels.push((facet, series));
    }
    // Every mean a setting shows, and its runs, except that one run far from the others (a
    // stalled seed) does not stretch the axis for the rest: it is drawn at the edge.
    let all = || panels.iter().flat_map(|(_, s)| s);
    let means = all().flat_map(|s| s.points.iter().filter(|p| !p.split).map(|p| p.y));
    let runs = all().flat_map(|s| s.runs.iter().map(|(_, v)| *v));
    let means = extent_of(means);
    let (low, high) = match (means, robust_extent(runs)) {
        (Some((a, b)), Some((c, d))) => (a.min(c), b.max(d)),
        (one, other) => one.or(other)?,
    };
    let low = if spec.from_zero { 0.0 } else { low };
    let y = Axis::fit(spec.y_label, low, high, false);
    let mut figure = Figure::grid(spec.title, panels, spec.x, y);
    for panel in &mut figure.panels {
        panel.reference = spec.reference.clone();
    }
    let slots = spec.norms.iter().flat_map(|norm| {
        spec.measures.iter().map(move |measure| {
            let look = Look::Marks {
                stroke: measure.stroke,
                joined: true,
            };
            (norm, measure.name, look)
        })
    });
    figure.legend = match spec.measures.len() > 1 && used.iter().filter(|u| **u).count() > 12 {
        // Too many norm-and-measure pairs for the legend column: colours name the norms and
        // grey samples the measures.
        true => compact_legend(context, &spec.norms, &spec.measures, &used),
        false => legend(context, slots, &used),
    };
    figure.legend.push(marks_note());
    if !failed.is_empty() {
        figure.legend.push(LegendEntry {
            label: "diverged or impossible (no result)".into(),
            color: NEUTRAL,
            look: Look::Failed,
            variant: 0,
        });
    }
    Some(Plot {
        file: spec.file,
        caption: format!(
            "{}{}{}",
            spec.caption,
            facet_sentence(&spec.facet_axes),
            failed_sentence(&failed)
        ),
        figure,
    })
}

/// One entry per norm in its colour, then one per measure in grey with its marker.
fn compact_legend(
    context: &Context,
    norms: &[String],
    measures: &[Measure],
    used: &[bool],
) -> Vec<LegendEntry> {
    let samples = measures.iter().map(|measure| LegendEntry {
        label: measure.name.unwrap_or_default().to_string(),
        color: NEUTRAL,
        look: Look::Marks {
            stroke: measure.stroke,
            joined: true,
        },
        variant: 0,
    });
    let per_norm = measures.len();
    let norms = norms
        .iter()
        .enumerate()
        .filter(|(n, _)| used[n * per_norm..(n + 1) * per_norm].contains(&true))
        .map(|(_, norm)| LegendEntry {
            label: norm.clone(),
            color: context.palette.color(norm),
            look: Look::Marks {
                stroke: Stroke::Solid,
                joined: false,
            },
            variant: context.variant(norm),
        });
    norms.chain(samples).collect()
}

/// Category labels as x ticks. Labels too long to sit side by side (more characters than a
/// full-width panel holds) give way to their `short` forms (a norm's kind without its options),
/// when those stay distinct: the legend gives them in full.
pub(crate) fn tick_labels(labels: &[String], short: &[String]) -> Vec<String> {
    const ROOM: usize = 72;
    let length: usize = labels.iter().map(|l| l.len() + 2).sum();
    let distinct = short.iter().collect::<std::collections::HashSet<_>>().len() == short.len();
    match length > ROOM && distinct {
        true => short.to_vec(),
        false => labels.to_vec(),
    }
}

/// What the crosses of a plot stand for, counted.
pub(crate) fn failed_sentence(failed: &[&RunRecord]) -> String {
    if failed.is_empty() {
        return String::new();
    }
    let count = |status| failed.iter().filter(|r| r.status == status).count();
    format!(
        " Crosses in the strip above the values mark settings with runs that diverged ({}) or \
         could not train ({}); those runs have no final result and are not in the means.",
        count(Status::Diverged),
        count(Status::Impossible)
    )
}

/// The mean and min..max of the values at each x, in increasing x, each marked split where
/// its values fall into two groups far apart.
pub(crate) fn spread_points(pairs: impl Iterator<Item = (f64, f64)>) -> Vec<Point> {
    let pairs: Vec<(f64, f64)> = pairs.filter(|(_, v)| v.is_finite()).collect();
    let mut xs = distinct(pairs.iter().map(|(x, _)| *x));
    xs.sort_by(f64::total_cmp);
    xs.into_iter()
        .filter_map(|x| {
            let values: Vec<f64> = (pairs.iter().filter(|(px, _)| *px == x))
                .map(|(_, v)| *v)
                .collect();
            let mut point = Point::spread(x, Spread::of(values.iter().copied())?);
            point.split = splits(&values);
            Some(point)
        })
        .collect()
}

/// True when `values` (three or more) fall into two groups whose gap is most of their range,
/// ten times the wider group's own range, and a quarter of their mean's size: some seeds
/// train and some stall.
fn splits(values: &[f64]) -> bool {
    if values.len() < 3 {
        return false;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let range = sorted[sorted.len() - 1] - sorted[0];
    let (at, gap) = (sorted.windows(2).enumerate())
        .map(|(i, w)| (i, w[1] - w[0]))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("three values have gaps");
    let (below, above) = sorted.split_at(at + 1);
    let spread_of = |group: &[f64]| group[group.len() - 1] - group[0];
    let within = spread_of(below).max(spread_of(above));
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    gap > 2.0 / 3.0 * range && gap > 10.0 * within && gap > 0.25 * mean.abs()
}

/// The offset of series `slot` of `slots`, centred on zero.
pub(crate) fn dodge(slot: usize, slots: usize) -> f64 {
    (slot as f64 - (slots as f64 - 1.0) / 2.0) * 0.006
}

/// How the values of one axis of the runs are placed along x: at their values on a log scale
/// when all are positive numbers and a log scale is allowed, else as evenly spaced categories
/// in grid order.
pub(crate) struct XPlacement {
    pub(crate) key: AxisKey,
    pub(crate) labels: Vec<String>,
    /// Each label's short form for crowded ticks: a norm's kind, any other label itself.
    short: Vec<String>,
    /// The value of each label, when every one is a positive number and log is allowed.
    values: Option<Vec<f64>>,
    pub(crate) log: bool,
}

impl XPlacement {
    /// Over the values of axis `key` that the records hold, in grid order; never a log scale
    /// for a single value.
    pub(crate) fn new(context: &Context, key: &AxisKey, allow_log: bool) -> Self {
        let pairs = distinct(
            context
                .records
                .iter()
                .filter_map(|r| label_and_value(r, key)),
        );
        let short = pairs
            .iter()
            .map(|(label, _)| {
                let record = context.records.iter().find(|r| r.label(key) == Some(label));
                match (key, record) {
                    (AxisKey::Norm, Some(r)) => r.config.model.norm().kind().to_string(),
                    _ => label.clone(),
                }
            })
            .collect();
        let values: Option<Vec<f64>> = pairs
            .iter()
            .map(|(_, value)| value.filter(|v| *v > 0.0 && v.is_finite()))
            .collect();
        let values = values.filter(|v| allow_log && v.len() > 1);
        Self {
            key: key.clone(),
            labels: pairs.into_iter().map(|(label, _)| label).collect(),
            short,
            log: values.is_some(),
            values,
        }
    }

    pub(crate) fn axis(&self) -> Axis {
        let label = self.key.describe();
        match &self.values {
            Some(values) => Axis::log_at(&format!("{label} (log scale)"), values),
            None => Axis::categories(&label, &tick_labels(&self.labels, &self.short)),
        }
    }

    /// Where `record` goes.
    pub(crate) fn of(&self, record: &RunRecord) -> Option<f64> {
        let (label, value) = label_and_value(record, &self.key)?;
        match self.values {
            Some(_) => value,
            None => self
                .labels
                .iter()
                .position(|l| *l == label)
                .map(|i| i as f64),
        }
    }
}

/// A run's label on axis `key` and its value there when a number. A run of a grid without that
/// axis is labelled by its value (the batch size every run has).
fn label_and_value(record: &RunRecord, key: &AxisKey) -> Option<(String, Option<f64>)> {
    let value = key.value(&record.config).and_then(|v| v.as_number());
    let label = match record.label(key) {
        Some(label) => label.to_string(),
        None => fmt_number(value?),
    };
    Some((label, value))
}

/// `(x, value)` as a list of zero or one pair.
pub(crate) fn pair(x: Option<f64>, value: Option<f64>) -> Vec<(f64, f64)> {
    x.zip(value).into_iter().collect()
}

/// The smallest and largest of the finite `values`.
fn extent_of(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (!values.is_empty()).then_some((low, high))
}
