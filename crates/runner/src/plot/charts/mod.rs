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
pub(crate) use loss_curves::loss_curves;
#[cfg(test)]
pub(crate) use loss_curves::{CURVE_POINTS, mean_band};
pub(crate) use percentiles::percentiles;
pub(crate) use step_time::step_time;
pub(crate) use train_vs_eval::train_vs_eval;

use crate::analysis::{Spread, axis_label, describe_axis, distinct, norm_label};
use crate::plot::axis::Axis;
use crate::plot::figure::Stroke;
use crate::plot::figure::{Figure, LegendEntry, Look, NEUTRAL, Point, Series, band_of, extent};
use crate::plot::{Context, Plot};
use crate::results::{RunRecord, Status};

/// The sentence that says how a figure is split into panels.
pub(crate) fn facet_sentence(axes: &[String]) -> String {
    match axes {
        [] => String::new(),
        [one] => format!(" One panel per {}.", describe_axis(one)),
        many => format!(" One panel per combination of {}.", many.join(", ")),
    }
}

/// One legend entry per used slot: a norm, the measure it is drawn with (if the plot has
/// several) and how it looks.
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
        })
        .collect()
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
    pub(crate) facet_axes: Vec<String>,
    pub(crate) norms: Vec<String>,
    pub(crate) measures: Vec<Measure<'a>>,
    /// Where runs without a result (diverged or impossible) go on x, drawn as crosses at the
    /// top; None to leave such runs out.
    pub(crate) failed_x: Option<&'a XPlacement>,
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
                .filter(|r| norm_label(r) == *norm)
                .collect();
            let color = context.palette.color(norm);
            for (m, measure) in spec.measures.iter().enumerate() {
                let slot = n * spec.measures.len() + m;
                let shift = match spec.dodge_norms {
                    true => dodge(slot, slots),
                    false => dodge(m, spec.measures.len()),
                };
                let points = spread_points(own.iter().flat_map(|r| (measure.values)(r)));
                if !points.is_empty() {
                    used[slot] = true;
                    series.push(Series {
                        color,
                        look: Look::Marks {
                            stroke: measure.stroke,
                            joined: spec.joined,
                        },
                        dodge: shift,
                        points,
                    });
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
                series.push(Series {
                    color,
                    look: Look::Failed,
                    dodge: dodge(n * spec.measures.len(), slots),
                    points: xs.into_iter().map(Point::at_top).collect(),
                });
            }
        }
        panels.push((facet, series));
    }
    let (low, high) = extent(panels.iter().flat_map(|(_, s)| s), band_of)?;
    // Room above the data for the crosses.
    let high = if failed.is_empty() {
        high
    } else {
        high + 0.12 * (high - low).max(high.abs() * 0.1)
    };
    let low = if spec.from_zero { 0.0 } else { low };
    let y = Axis::fit(spec.y_label, low, high, false);
    let mut figure = Figure::grid(spec.title, panels, spec.x, y);
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
    if !failed.is_empty() {
        figure.legend.push(LegendEntry {
            label: "diverged or impossible (no result)".into(),
            color: NEUTRAL,
            look: Look::Failed,
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
        });
    norms.chain(samples).collect()
}

/// Category labels as x ticks. Labels too long to sit side by side (more characters than a
/// full-width panel holds) lose their options in parentheses, when the names alone stay
/// distinct: the legend gives them in full.
pub(crate) fn tick_labels(labels: &[String]) -> Vec<String> {
    const ROOM: usize = 72;
    let length: usize = labels.iter().map(|l| l.len() + 2).sum();
    let names: Vec<String> = labels
        .iter()
        .map(|l| l.split('(').next().unwrap_or(l).to_string())
        .collect();
    let distinct = names.iter().collect::<std::collections::HashSet<_>>().len() == names.len();
    match length > ROOM && distinct {
        true => names,
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
        " Crosses at the top mark settings with runs that diverged ({}) or could not train ({}); \
         those runs have no final result and are not in the means.",
        count(Status::Diverged),
        count(Status::Impossible)
    )
}

/// The mean and min..max of the values at each x, in increasing x.
pub(crate) fn spread_points(pairs: impl Iterator<Item = (f64, f64)>) -> Vec<Point> {
    let pairs: Vec<(f64, f64)> = pairs.filter(|(_, v)| v.is_finite()).collect();
    let mut xs = distinct(pairs.iter().map(|(x, _)| *x));
    xs.sort_by(f64::total_cmp);
    xs.into_iter()
        .filter_map(|x| {
            let values = pairs.iter().filter(|(px, _)| *px == x).map(|(_, v)| *v);
            Some(Point::spread(x, Spread::of(values)?))
        })
        .collect()
}

/// The offset of series `slot` of `slots`, centred on zero.
pub(crate) fn dodge(slot: usize, slots: usize) -> f64 {
    (slot as f64 - (slots as f64 - 1.0) / 2.0) * 0.006
}

/// How the values of one axis of the runs are placed along x: at their logarithm when all are
/// positive numbers and a log scale is allowed, else as evenly spaced categories.
pub(crate) struct XPlacement {
    pub(crate) name: String,
    pub(crate) labels: Vec<String>,
    pub(crate) log: bool,
}

impl XPlacement {
    /// Over the values of axis `name` that the records hold, in grid order.
    pub(crate) fn new(context: &Context, name: &str, allow_log: bool) -> Self {
        let labels = distinct(context.records.iter().filter_map(|r| axis_label(r, name)));
        let log = allow_log
            && labels
                .iter()
                .all(|l| l.parse::<f64>().is_ok_and(|v| v > 0.0 && v.is_finite()));
        Self {
            name: name.to_string(),
            labels,
            log,
        }
    }

    pub(crate) fn axis(&self) -> Axis {
        let label = describe_axis(&self.name);
        match self.log {
            true => {
                let values: Vec<f64> = self.labels.iter().filter_map(|l| l.parse().ok()).collect();
                Axis::log_at(&format!("{label} (log scale)"), &values)
            }
            false => Axis::categories(&label, &tick_labels(&self.labels)),
        }
    }

    /// Where `record` goes.
    pub(crate) fn of(&self, record: &RunRecord) -> Option<f64> {
        let label = axis_label(record, &self.name)?;
        match self.log {
            true => label.parse().ok(),
            false => self
                .labels
                .iter()
                .position(|l| *l == label)
                .map(|i| i as f64),
        }
    }
}

/// `(x, value)` as a list of zero or one pair.
pub(crate) fn pair(x: Option<f64>, value: Option<f64>) -> Vec<(f64, f64)> {
    x.zip(value).into_iter().collect()
}
