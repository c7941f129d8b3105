//! PNG plots of an experiment's results.
//!
//! Which plots are drawn depends on the experiment's axes and on what its runs recorded (see
//! [`draw_all`]). Every plot is first described in data terms, as a `Figure` of panels holding
//! series, and then drawn by the one renderer at the end of this file, so that all plots share
//! layout, fonts, axis handling and the colour of each norm.
//!
//! The helpers marked `pub(crate)` (norm labels, final metrics, spreads over seeds) are shared
//! with the report, so that its numbers are exactly the plotted ones.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::config::Experiment;
use crate::results::{Eval, RunRecord, Status};

/// One drawn plot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotFile {
    /// The file name inside the output folder, e.g. `loss_curves.png`.
    pub file: String,
    pub title: String,
    /// What the plot shows and how its numbers were computed, for the report.
    pub caption: String,
}

/// Draws every plot that `experiment`'s axes and `records` call for into `out_dir` and returns
/// them in drawing order:
///
/// - `loss_curves.png`: training loss vs examples seen, whenever a run recorded losses;
/// - `error_vs_batch_size.png`, `error_vs_lr.png`, `error_vs_init_scale.png`: final error vs
///   that axis, when it has more than one value;
/// - `train_vs_eval.png`: batch norm's eval-mode vs train-mode error, when recorded;
/// - `percentiles.png`: activation percentiles over training, when runs were probed;
/// - `error_vs_length.png`: error vs evaluation length, when evaluated at several lengths;
/// - `step_time.png`: step time per norm, when the norm varies;
/// - `error_by_<axis>.png`: final error per value of any other axis with several values.
///
/// A plot without data is skipped, so an unfinished sweep gets fewer plots, never empty ones.
pub fn draw_all(
    experiment: &Experiment,
    records: &[RunRecord],
    out_dir: &Path,
) -> Result<Vec<PlotFile>, String> {
    let context = Context::new(experiment, records);
    let mut plots: Vec<Plot> = Vec::new();
    plots.extend(loss_curves(&context));
    plots.extend(error_vs_axis(
        &context,
        "batch_size",
        "error_vs_batch_size.png",
        true,
    ));
    plots.extend(train_vs_eval(&context));
    plots.extend(error_vs_axis(&context, "lr", "error_vs_lr.png", true));
    plots.extend(error_vs_axis(
        &context,
        "init_scale",
        "error_vs_init_scale.png",
        true,
    ));
    plots.extend(percentiles(&context));
    plots.extend(error_vs_length(&context));
    plots.extend(step_time(&context));
    for axis in other_axes(experiment, &COVERED_AXES) {
        plots.extend(error_vs_axis(
            &context,
            &axis,
            &format!("error_by_{axis}.png"),
            false,
        ));
    }
    if plots.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    plots
        .into_iter()
        .map(|plot| {
            render(&plot.figure, &out_dir.join(&plot.file))?;
            Ok(PlotFile {
                file: plot.file,
                title: plot.figure.title,
                caption: plot.caption,
            })
        })
        .collect()
}

/// Axes that have plots of their own; every other axis with several values gets `error_by_`.
const COVERED_AXES: [&str; 5] = ["seed", "norm", "batch_size", "lr", "init_scale"];

// ---------------------------------------------------------------------------------------------
// Shared with the report: what a run's numbers are and how seeds are summarized.

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
fn axis_label(record: &RunRecord, name: &str) -> Option<String> {
    record
        .axis(name)
        .map(str::to_string)
        .or_else(|| (name == "batch_size").then(|| record.config.train.batch_size.to_string()))
}

/// The final validation error of a finished run, in percent. Diverged and impossible runs have
/// no result, whatever they evaluated before stopping.
pub(crate) fn final_error(record: &RunRecord) -> Option<f64> {
    finished_eval(record).map(|eval| f64::from(eval.valid_error) * 100.0)
}

/// The final train-mode (batch statistics) error of a finished run, in percent.
pub(crate) fn final_train_mode_error(record: &RunRecord) -> Option<f64> {
    finished_eval(record)
        .and_then(|eval| eval.train_mode_error)
        .map(|error| f64::from(error) * 100.0)
}

fn finished_eval(record: &RunRecord) -> Option<&Eval> {
    (record.status == Status::Finished)
        .then(|| record.final_eval())
        .flatten()
}

/// The median step time of a run that trained at least one step, in milliseconds.
pub(crate) fn step_ms(record: &RunRecord) -> Option<f64> {
    (record.step_seconds > 0.0 && record.step_seconds.is_finite())
        .then_some(record.step_seconds * 1e3)
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

// ---------------------------------------------------------------------------------------------
// Colours: one per norm label, fixed by kind, the same in every plot of an experiment.

/// The colour of each norm kind's plain label (or first variant).
const KIND_COLORS: [(&str, RGBColor); 6] = [
    ("none", RGBColor(110, 110, 110)),
    ("batch", RGBColor(31, 119, 180)),
    ("layer", RGBColor(255, 127, 14)),
    ("instance", RGBColor(44, 160, 44)),
    ("group", RGBColor(214, 39, 40)),
    ("rms", RGBColor(148, 103, 189)),
];

/// Colours of further variants of a kind, handed out in sorted label order.
const VARIANT_COLORS: [RGBColor; 8] = [
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 128),
    RGBColor(0, 128, 128),
    RGBColor(218, 165, 32),
    RGBColor(0, 0, 0),
];

/// Marks that belong to no norm (legend samples of shapes).
const NEUTRAL: RGBColor = RGBColor(60, 60, 60);

/// The colour of every norm label of an experiment.
struct Palette {
    colors: Vec<(String, RGBColor)>,
}

impl Palette {
    /// Deterministic in the set of labels: the label that is a kind's bare name (else the first
    /// of that kind in sorted order) gets the kind's colour; the rest, sorted, get the variant
    /// colours in turn.
    fn new(labels: &[String]) -> Self {
        let mut sorted = labels.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut colors: Vec<(String, RGBColor)> = Vec::new();
        for (kind, color) in KIND_COLORS {
            let base = sorted
                .iter()
                .find(|label| *label == kind)
                .or_else(|| sorted.iter().find(|label| norm_kind(label) == kind));
            if let Some(label) = base {
                colors.push((label.clone(), color));
            }
        }
        let mut variants = VARIANT_COLORS.iter().cycle();
        for label in sorted {
            if !colors.iter().any(|(l, _)| *l == label) {
                let color = *variants.next().expect("a cycle never ends");
                colors.push((label, color));
            }
        }
        Self { colors }
    }

    fn color(&self, label: &str) -> RGBColor {
        self.colors
            .iter()
            .find(|(l, _)| l == label)
            .map_or(NEUTRAL, |(_, color)| *color)
    }
}

// ---------------------------------------------------------------------------------------------
// Figures in data terms.

/// A plot ready to render.
struct Plot {
    file: String,
    caption: String,
    figure: Figure,
}

/// Panels in a grid, row by row, with one legend for all of them.
struct Figure {
    title: String,
    columns: usize,
    panels: Vec<Panel>,
    legend: Vec<LegendEntry>,
}

struct Panel {
    /// Empty for a figure of one panel: the figure's title says it all.
    title: String,
    x: Axis,
    y: Axis,
    series: Vec<Series>,
}

/// One axis: its label, its scale and where its ticks are.
#[derive(Debug, Clone)]
struct Axis {
    label: String,
    /// Values are drawn at their natural logarithm.
    log: bool,
    /// In drawing coordinates (after the logarithm).
    range: Range<f64>,
    /// Drawing coordinate and text of each tick.
    ticks: Vec<(f64, String)>,
}

#[derive(Debug, Clone)]
struct Series {
    color: RGBColor,
    look: Look,
    /// Horizontal offset as a share of the panel's x range, so that error bars of several
    /// series at the same x stay apart.
    dodge: f64,
    points: Vec<Point>,
}

/// A value with its spread, in data coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    x: f64,
    y: f64,
    low: f64,
    high: f64,
}

impl Point {
    /// The mean and min..max of `spread` at `x`.
    fn spread(x: f64, spread: Spread) -> Self {
        Self {
            x,
            y: spread.mean,
            low: spread.min,
            high: spread.max,
        }
    }

    /// A mark with no value: drawn at the top of the panel.
    fn at_top(x: f64) -> Self {
        Self {
            x,
            y: f64::NAN,
            low: f64::NAN,
            high: f64::NAN,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// A line through `y` over a shaded band from `low` to `high`.
    Band,
    /// A thin line through `y`.
    Thin,
    /// Markers at `y` with error bars from `low` to `high`, joined by a line if `joined`;
    /// dashed series use triangles, to tell a second measure of the same norm apart.
    Marks { dashed: bool, joined: bool },
    /// Crosses at the top of the panel: runs without a result.
    Failed,
}

struct LegendEntry {
    label: String,
    color: RGBColor,
    look: Look,
}

impl Figure {
    /// Panels of the given titles and series sharing the axes `x` and `y`.
    fn grid(title: String, panels: Vec<(String, Vec<Series>)>, x: Axis, y: Axis) -> Self {
        let count = panels.len();
        Self {
            title,
            columns: match count {
                0 | 1 => 1,
                2 | 4 => 2,
                _ => 3,
            },
            panels: panels
                .into_iter()
                .map(|(title, series)| Panel {
                    title,
                    x: x.clone(),
                    y: y.clone(),
                    series,
                })
                .collect(),
            legend: Vec::new(),
        }
    }
}

/// The smallest and largest finite coordinate `pick` yields over the series' points, skipping
/// crosses, which have no value.
fn extent<'a>(
    series: impl IntoIterator<Item = &'a Series>,
    pick: impl Fn(&Point) -> [f64; 2],
) -> Option<(f64, f64)> {
    let values: Vec<f64> = series
        .into_iter()
        .filter(|s| s.look != Look::Failed)
        .flat_map(|s| s.points.iter().flat_map(&pick))
        .filter(|v| v.is_finite())
        .collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (!values.is_empty()).then_some((min, max))
}

fn x_of(point: &Point) -> [f64; 2] {
    [point.x, point.x]
}

fn band_of(point: &Point) -> [f64; 2] {
    [point.low, point.high]
}

/// Everything the plot builders need about the experiment.
struct Context<'a> {
    experiment: &'a Experiment,
    records: &'a [RunRecord],
    /// Norm labels in grid order: the order of series and legend entries.
    norms: Vec<String>,
    palette: Palette,
}

impl<'a> Context<'a> {
    fn new(experiment: &'a Experiment, records: &'a [RunRecord]) -> Self {
        let norms = norm_labels(experiment);
        Self {
            experiment,
            records,
            palette: Palette::new(&norms),
            norms,
        }
    }

    /// The records whose values of `axes` are described by `facet`.
    fn in_facet<'b>(
        &'b self,
        axes: &'b [String],
        facet: &'b str,
    ) -> impl Iterator<Item = &'a RunRecord> + 'b {
        self.records
            .iter()
            .filter(move |r| describe(r, axes) == facet)
    }

    /// The distinct values of `axes` over the records, in record (grid) order: the panels.
    fn facets(&self, axes: &[String]) -> Vec<String> {
        distinct(self.records.iter().map(|r| describe(r, axes)))
    }
}

/// The sentence that says how a figure is split into panels.
fn facet_sentence(axes: &[String]) -> String {
    match axes {
        [] => String::new(),
        [one] => format!(" One panel per {}.", describe_axis(one)),
        many => format!(" One panel per combination of {}.", many.join(", ")),
    }
}

// ---------------------------------------------------------------------------------------------
// Loss curves.

/// Points on the common x grid of the loss curves of one norm.
const CURVE_POINTS: usize = 200;

/// Training loss vs examples seen: per norm the mean over seeds of the smoothed loss, with a
/// band from min to max over seeds; one panel per value of the other varying axes.
fn loss_curves(context: &Context) -> Option<Plot> {
    let facet_axes = other_axes(context.experiment, &["norm", "seed"]);
    let panels: Vec<(String, Vec<Series>)> = context
        .facets(&facet_axes)
        .into_iter()
        .map(|facet| {
            let series = context
                .norms
                .iter()
                .filter_map(|norm| {
                    let curves: Vec<Vec<(f64, f64)>> = context
                        .in_facet(&facet_axes, &facet)
                        .filter(|r| norm_label(r) == *norm)
                        .map(smoothed_loss)
                        .filter(|curve| !curve.is_empty())
                        .collect();
                    let points = mean_band(&curves);
                    (!points.is_empty()).then(|| Series {
                        color: context.palette.color(norm),
                        look: Look::Band,
                        dodge: 0.0,
                        points,
                    })
                })
                .collect();
            (facet, series)
        })
        .collect();
    let all = || panels.iter().flat_map(|(_, series)| series);
    let (_, x_max) = extent(all(), x_of)?;
    let (y_min, y_max) = extent(all(), band_of)?;
    let x = Axis::fit("training examples seen", 0.0, x_max, false);
    let y = Axis::fit("training loss (cross-entropy)", y_min, y_max, true);
    let log_note = if y.log { " Log-scale loss axis." } else { "" };
    let mut figure = Figure::grid("Training loss".into(), panels, x, y);
    let used: Vec<bool> = context
        .norms
        .iter()
        .map(|norm| {
            context
                .records
                .iter()
                .any(|r| norm_label(r) == *norm && r.losses.iter().any(|l| l.loss.is_finite()))
        })
        .collect();
    let slots = context.norms.iter().map(|norm| (norm, None, Look::Band));
    figure.legend = legend(context, slots, &used);
    Some(Plot {
        file: "loss_curves.png".into(),
        caption: format!(
            "Training loss vs training examples seen, smoothed by a moving average over {}% of \
             each run's steps: the line is the mean over seeds, the band spans min to max over \
             seeds (runs that diverged end early).{}{log_note}",
            100 / SMOOTHING_DIVISOR,
            facet_sentence(&facet_axes)
        ),
        figure,
    })
}

/// A run's loss is smoothed over windows of 1/SMOOTHING_DIVISOR of its recorded steps (at
/// least one step): enough to see the trend through mini-batch noise, short enough to keep it.
const SMOOTHING_DIVISOR: usize = 25;

/// `(samples seen, loss)` of a run, smoothed by a centred moving average; non-finite losses
/// (a diverging run's last steps) are left out.
fn smoothed_loss(record: &RunRecord) -> Vec<(f64, f64)> {
    let points: Vec<(f64, f64)> = record
        .losses
        .iter()
        .filter(|l| l.loss.is_finite())
        .map(|l| (l.samples as f64, f64::from(l.loss)))
        .collect();
    let half = points.len() / SMOOTHING_DIVISOR / 2;
    (0..points.len())
        .map(|i| {
            let window = &points[i.saturating_sub(half)..(i + half + 1).min(points.len())];
            let mean = window.iter().map(|(_, loss)| loss).sum::<f64>() / window.len() as f64;
            (points[i].0, mean)
        })
        .collect()
}

/// Mean, min and max of the curves on a common grid of x values; at each x only the curves
/// that reach it count, so a run that stopped early does not drag the mean.
fn mean_band(curves: &[Vec<(f64, f64)>]) -> Vec<Point> {
    let ends = curves
        .iter()
        .filter_map(|c| Some((c.first()?.0, c.last()?.0)));
    let (start, end) = ends.fold(
        (f64::INFINITY, f64::NEG_INFINITY),
        |(start, end), (first, last)| (start.min(first), end.max(last)),
    );
    if start > end {
        return Vec::new();
    }
    let step = (end - start) / (CURVE_POINTS - 1) as f64;
    (0..CURVE_POINTS)
        .map(|i| start + step * i as f64)
        .filter_map(|x| {
            let spread = Spread::of(curves.iter().filter_map(|c| interpolate(c, x)))?;
            Some(Point::spread(x, spread))
        })
        .collect()
}

/// The curve's value at `x` by linear interpolation; None outside the curve.
fn interpolate(curve: &[(f64, f64)], x: f64) -> Option<f64> {
    let after = curve.iter().position(|&(cx, _)| cx >= x)?;
    let (x1, y1) = curve[after];
    if after == 0 {
        return (x1 == x).then_some(y1);
    }
    let (x0, y0) = curve[after - 1];
    Some(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
}

/// One legend entry per used slot: a norm, the measure it is drawn with (if the plot has
/// several) and how it looks.
fn legend<'s>(
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

// ---------------------------------------------------------------------------------------------
// Final metrics vs an axis: mean over seeds with min..max bars, one series per norm.

/// One quantity drawn for every norm of a [`SpreadPlot`].
struct Measure<'a> {
    /// Added to the norm label in the legend, e.g. `eval mode`; None for a plot's only measure.
    name: Option<&'a str>,
    dashed: bool,
    /// The `(x, value)` pairs one run contributes.
    values: &'a dyn Fn(&RunRecord) -> Vec<(f64, f64)>,
}

/// A plot of measures vs x: one panel per value of `facet_axes`, one series per norm and
/// measure with the mean over runs at each x and bars from min to max.
struct SpreadPlot<'a> {
    file: String,
    title: String,
    caption: String,
    x: Axis,
    y_label: &'a str,
    /// Start the value axis at zero (times), rather than near the smallest value (errors).
    from_zero: bool,
    /// Join the markers by lines: for ordered x values, not for categories.
    joined: bool,
    facet_axes: Vec<String>,
    norms: Vec<String>,
    measures: Vec<Measure<'a>>,
    /// Where runs without a result (diverged or impossible) go on x, drawn as crosses at the
    /// top; None to leave such runs out.
    failed_x: Option<&'a XPlacement>,
}

fn spread_plot(context: &Context, spec: SpreadPlot) -> Option<Plot> {
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
                let points = spread_points(own.iter().flat_map(|r| (measure.values)(r)));
                if !points.is_empty() {
                    used[slot] = true;
                    series.push(Series {
                        color,
                        look: Look::Marks {
                            dashed: measure.dashed,
                            joined: spec.joined,
                        },
                        dodge: dodge(slot, slots),
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
                dashed: measure.dashed,
                joined: true,
            };
            (norm, measure.name, look)
        })
    });
    figure.legend = legend(context, slots, &used);
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

/// What the crosses of a plot stand for, counted.
fn failed_sentence(failed: &[&RunRecord]) -> String {
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
fn spread_points(pairs: impl Iterator<Item = (f64, f64)>) -> Vec<Point> {
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
fn dodge(slot: usize, slots: usize) -> f64 {
    (slot as f64 - (slots as f64 - 1.0) / 2.0) * 0.006
}

/// How the values of one axis of the runs are placed along x: at their logarithm when all are
/// positive numbers and a log scale is allowed, else as evenly spaced categories.
struct XPlacement {
    name: String,
    labels: Vec<String>,
    log: bool,
}

impl XPlacement {
    /// Over the values of axis `name` that the records hold, in grid order.
    fn new(context: &Context, name: &str, allow_log: bool) -> Self {
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

    fn axis(&self) -> Axis {
        let label = describe_axis(&self.name);
        match self.log {
            true => {
                let values: Vec<f64> = self.labels.iter().filter_map(|l| l.parse().ok()).collect();
                Axis::log_at(&format!("{label} (log scale)"), &values)
            }
            false => Axis::categories(&label, &self.labels),
        }
    }

    /// Where `record` goes.
    fn of(&self, record: &RunRecord) -> Option<f64> {
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

/// Final validation error vs axis `name` (log x where `allow_log` and the values permit, else
/// categories), one series per norm, failed runs as crosses.
fn error_vs_axis(context: &Context, name: &str, file: &str, allow_log: bool) -> Option<Plot> {
    if !varies(context.experiment, name) {
        return None;
    }
    let placement = XPlacement::new(context, name, allow_log);
    let values = |r: &RunRecord| pair(placement.of(r), final_error(r));
    let description = describe_axis(name);
    spread_plot(
        context,
        SpreadPlot {
            file: file.to_string(),
            title: format!("Final validation error vs {description}"),
            caption: format!(
                "Validation error (%) at the end of training vs {description}, one series per \
                 norm: mean over seeds (marker) with bars from min to max over seeds."
            ),
            x: placement.axis(),
            y_label: "validation error (%)",
            from_zero: false,
            joined: placement.log,
            facet_axes: other_axes(context.experiment, &["norm", "seed", name]),
            norms: context.norms.clone(),
            measures: vec![Measure {
                name: None,
                dashed: false,
                values: &values,
            }],
            failed_x: Some(&placement),
        },
    )
}

/// `(x, value)` as a list of zero or one pair.
fn pair(x: Option<f64>, value: Option<f64>) -> Vec<(f64, f64)> {
    x.zip(value).into_iter().collect()
}

/// Batch norm's error in eval mode (running statistics) and in train mode (batch statistics)
/// vs the batch size, or vs the other varying axis without one.
fn train_vs_eval(context: &Context) -> Option<Plot> {
    let norms: Vec<String> = context
        .norms
        .iter()
        .filter(|norm| {
            context
                .records
                .iter()
                .any(|r| norm_label(r) == **norm && final_train_mode_error(r).is_some())
        })
        .cloned()
        .collect();
    if norms.is_empty() {
        return None;
    }
    let name = match varies(context.experiment, "batch_size") {
        true => "batch_size".to_string(),
        false => other_axes(context.experiment, &["norm", "seed"])
            .into_iter()
            .next()
            .unwrap_or_else(|| "batch_size".into()),
    };
    let placement = XPlacement::new(context, &name, true);
    let eval_mode = |r: &RunRecord| pair(placement.of(r), final_error(r));
    let train_mode = |r: &RunRecord| pair(placement.of(r), final_train_mode_error(r));
    spread_plot(
        context,
        SpreadPlot {
            file: "train_vs_eval.png".into(),
            title: "Batch norm: eval mode vs train mode".into(),
            caption: "Final validation error (%) of each batch-norm variant evaluated two ways: \
                      eval mode with the running statistics (solid line, circles) and train mode \
                      with the statistics of each evaluation batch at the training batch size \
                      (dashed line, triangles); mean over seeds with bars from min to max."
                .into(),
            x: placement.axis(),
            y_label: "validation error (%)",
            from_zero: false,
            joined: placement.log,
            facet_axes: other_axes(context.experiment, &["norm", "seed", name.as_str()]),
            norms,
            measures: vec![
                Measure {
                    name: Some("eval mode"),
                    dashed: false,
                    values: &eval_mode,
                },
                Measure {
                    name: Some("train mode"),
                    dashed: true,
                    values: &train_mode,
                },
            ],
            failed_x: Some(&placement),
        },
    )
}

/// Final error vs the evaluation sequence length, one series per norm; the training length
/// contributes the ordinary validation error.
fn error_vs_length(context: &Context) -> Option<Plot> {
    let values = |r: &RunRecord| -> Vec<(f64, f64)> {
        errors_by_length(r)
            .into_iter()
            .map(|(length, error)| (length as f64, error))
            .collect()
    };
    let mut lengths = distinct(context.records.iter().flat_map(&values).map(|(x, _)| x));
    if lengths.is_empty() {
        return None;
    }
    lengths.sort_by(f64::total_cmp);
    spread_plot(
        context,
        SpreadPlot {
            file: "error_vs_length.png".into(),
            title: "Final validation error vs evaluation length".into(),
            caption: "Validation error (%) at the end of training on evaluation sequences of \
                      each length (the training length gives the ordinary validation error), \
                      one series per norm: mean over seeds with bars from min to max."
                .into(),
            x: Axis::log_at("evaluation sequence length (steps, log scale)", &lengths),
            y_label: "validation error (%)",
            from_zero: false,
            joined: true,
            facet_axes: other_axes(context.experiment, &["norm", "seed"]),
            norms: context.norms.clone(),
            measures: vec![Measure {
                name: None,
                dashed: false,
                values: &values,
            }],
            failed_x: None,
        },
    )
}

/// `(evaluation length, error %)` of a finished run evaluated at several lengths, including the
/// training length, whose error is the ordinary validation error unless measured apart; empty
/// for a run without such evaluations.
pub(crate) fn errors_by_length(record: &RunRecord) -> Vec<(usize, f64)> {
    let Some(eval) = finished_eval(record) else {
        return Vec::new();
    };
    let mut pairs: Vec<(usize, f64)> = eval
        .by_length
        .iter()
        .map(|l| (l.length, f64::from(l.error) * 100.0))
        .collect();
    let trained = record.config.data.seq_len;
    if !pairs.is_empty() && !pairs.iter().any(|(length, _)| *length == trained) {
        pairs.push((trained, f64::from(eval.valid_error) * 100.0));
    }
    pairs
}

/// Median step time per norm: vs batch size when it varies, else one position per norm;
/// pooled over every other axis.
fn step_time(context: &Context) -> Option<Plot> {
    if !varies(context.experiment, "norm") {
        return None;
    }
    let by_batch = varies(context.experiment, "batch_size");
    let placement = XPlacement::new(context, if by_batch { "batch_size" } else { "norm" }, true);
    let values = |r: &RunRecord| pair(placement.of(r), step_ms(r));
    let grouping = if by_batch { " and batch size" } else { "" };
    spread_plot(
        context,
        SpreadPlot {
            file: "step_time.png".into(),
            title: "Training step time".into(),
            caption: format!(
                "Median wall time of one training step (forward, backward and update) of each \
                 run: mean over all runs of a norm{grouping} (marker) with bars from min to max, \
                 pooled over the other axes."
            ),
            x: placement.axis(),
            y_label: "step time (ms)",
            from_zero: true,
            joined: by_batch,
            facet_axes: Vec::new(),
            norms: context.norms.clone(),
            measures: vec![Measure {
                name: None,
                dashed: false,
                values: &values,
            }],
            failed_x: None,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Activation percentiles.

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

/// The 15th, 50th and 85th percentiles of tracked unit 0 at the input of the activation (the
/// `after` summary) over training steps: one row per probe site, one column per norm.
fn percentiles(context: &Context) -> Option<Plot> {
    let runs = percentile_runs(context.experiment, context.records);
    let first = runs.first()?;
    let sites = distinct(runs.iter().flat_map(|r| {
        r.probes
            .iter()
            .flat_map(|p| p.sites.iter().map(|s| s.site.clone()))
    }));
    let column_axes = other_axes(context.experiment, &["norm", "seed"]);
    let all_series: Vec<Vec<Vec<Series>>> = sites
        .iter()
        .map(|site| {
            runs.iter()
                .map(|r| percentile_series(r, site, context.palette.color(&norm_label(r))))
                .collect()
        })
        .collect();
    let x_max = extent(all_series.iter().flatten().flatten(), x_of)?.1;
    let x = Axis::fit("training step", 0.0, x_max, false);
    let mut panels = Vec::new();
    for (site, row) in sites.iter().zip(all_series) {
        let Some((low, high)) = extent(row.iter().flatten(), band_of) else {
            continue;
        };
        let y = Axis::fit(&format!("{site}: unit 0"), low, high, false);
        for (run, series) in runs.iter().zip(row) {
            let column = [norm_label(run), describe(run, &column_axes)]
                .into_iter()
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            panels.push(Panel {
                title: column,
                x: x.clone(),
                y: y.clone(),
                series,
            });
        }
    }
    let setting = describe(first, &other_axes(context.experiment, &["norm"]));
    let setting = match setting.is_empty() {
        true => String::new(),
        false => format!(" (the first probed run of each norm: {setting})"),
    };
    Some(Plot {
        file: "percentiles.png".into(),
        caption: format!(
            "The 15th, 50th and 85th percentiles over the batch of tracked unit 0 at the input \
             of the activation (the norm's output) over training steps, as in the batch norm \
             paper's Figure 1: one row per layer, one column per norm{setting}."
        ),
        figure: Figure {
            title: "Activation percentiles during training".into(),
            columns: runs.len(),
            panels,
            legend: vec![
                LegendEntry {
                    label: "50th percentile (median)".into(),
                    color: NEUTRAL,
                    look: Look::Band,
                },
                LegendEntry {
                    label: "15th and 85th percentiles".into(),
                    color: NEUTRAL,
                    look: Look::Thin,
                },
            ],
        },
    })
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

/// The median over a band from the 15th to the 85th percentile, and both edges as thin lines.
fn percentile_series(record: &RunRecord, site: &str, color: RGBColor) -> Vec<Series> {
    let track = unit_zero(record, Some(site));
    if track.is_empty() {
        return Vec::new();
    }
    let line = |look, pick: fn(&[f32; 3]) -> (f32, f32, f32)| Series {
        color,
        look,
        dodge: 0.0,
        points: track
            .iter()
            .map(|(step, p)| {
                let (low, y, high) = pick(p);
                Point {
                    x: *step as f64,
                    y: f64::from(y),
                    low: f64::from(low),
                    high: f64::from(high),
                }
            })
            .collect(),
    };
    vec![
        line(Look::Band, |p| (p[0], p[1], p[2])),
        line(Look::Thin, |p| (p[0], p[0], p[0])),
        line(Look::Thin, |p| (p[2], p[2], p[2])),
    ]
}

// ---------------------------------------------------------------------------------------------
// Axes: ranges and ticks.

impl Axis {
    /// Spans `low..high` with round ticks, on a log scale when `allow_log` and the values span
    /// more than 20x, where a linear axis would flatten the small end.
    fn fit(label: &str, low: f64, high: f64, allow_log: bool) -> Self {
        let log = allow_log && low > 0.0 && high / low > 20.0;
        if log {
            let range = padded(low.ln(), high.ln(), false);
            Self {
                label: format!("{label} (log scale)"),
                log,
                ticks: log_ticks(&range),
                range,
            }
        } else {
            let range = padded(low, high, low >= 0.0);
            Self {
                label: label.to_string(),
                log,
                ticks: linear_ticks(&range),
                range,
            }
        }
    }

    /// A log scale with ticks at exactly `values` (positive): batch sizes, learning rates.
    fn log_at(label: &str, values: &[f64]) -> Self {
        let low = values.iter().copied().fold(f64::INFINITY, f64::min).ln();
        let high = values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
            .ln();
        let margin = if high > low { 0.08 * (high - low) } else { 0.5 };
        Self {
            label: label.to_string(),
            log: true,
            range: low - margin..high + margin,
            ticks: values.iter().map(|v| (v.ln(), fmt_number(*v))).collect(),
        }
    }

    /// One tick per category, at 0, 1, ...
    fn categories(label: &str, names: &[String]) -> Self {
        Self {
            label: label.to_string(),
            log: false,
            range: -0.5..names.len() as f64 - 0.5,
            ticks: names
                .iter()
                .enumerate()
                .map(|(i, name)| (i as f64, name.clone()))
                .collect(),
        }
    }

    /// The drawing coordinate of a data value.
    fn at(&self, value: f64) -> f64 {
        if self.log { value.ln() } else { value }
    }

    /// The text of the tick at drawing coordinate `position`.
    fn tick_text(&self, position: f64) -> String {
        self.ticks
            .iter()
            .min_by(|a, b| (a.0 - position).abs().total_cmp(&(b.0 - position).abs()))
            .map(|(_, text)| text.clone())
            .unwrap_or_default()
    }
}

/// The axis as plotters' coordinate: linear in drawing coordinates, with grid lines and labels
/// exactly at the ticks.
impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        RangedCoordf64::from(self.range.clone()).map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Light grid lines between the ticks would only add clutter.
        match hint.weight().allow_light_points() {
            true => Vec::new(),
            false => self.ticks.iter().map(|(position, _)| *position).collect(),
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// `low..high` widened by 5% on each side (a little more if it is a single value), not below
/// zero if `non_negative`.
fn padded(low: f64, high: f64, non_negative: bool) -> Range<f64> {
    let span = if high > low {
        high - low
    } else {
        low.abs().max(1.0) * 0.2
    };
    let start = low - 0.05 * span;
    let start = if non_negative { start.max(0.0) } else { start };
    start..high + 0.05 * span
}

/// Ticks at round numbers (1, 2 or 5 times a power of ten apart), about six of them.
fn linear_ticks(range: &Range<f64>) -> Vec<(f64, String)> {
    let raw = (range.end - range.start) / 6.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let first = (range.start / step).ceil() as i64;
    let last = (range.end / step).floor() as i64;
    (first..=last)
        .map(|i| {
            let value = i as f64 * step;
            // `+ 0.0` turns -0 into 0.
            (value, format!("{:.decimals$}", value + 0.0))
        })
        .collect()
}

/// Ticks at 1, 2 and 5 times powers of ten inside a log range (drawing coordinates); every
/// integer multiple where that leaves fewer than two, powers of ten only where it gives many.
fn log_ticks(range: &Range<f64>) -> Vec<(f64, String)> {
    let (low, high) = (range.start.exp(), range.end.exp());
    let decades = low.log10().floor() as i32..=high.log10().ceil() as i32;
    let with = |multipliers: &[f64]| -> Vec<f64> {
        decades
            .clone()
            .flat_map(|d| multipliers.iter().map(move |m| m * 10f64.powi(d)))
            .filter(|v| (low..=high).contains(v))
            .collect()
    };
    let mut values = with(&[1.0, 2.0, 5.0]);
    if values.len() > 10 {
        values = with(&[1.0]);
    } else if values.len() < 2 {
        values = with(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    }
    values
        .into_iter()
        .map(|v| (v.ln(), fmt_number(v)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Rendering.

const FONT: &str = "sans-serif";
/// Figure widths: one panel, and a grid of panels.
const NARROW: u32 = 1000;
const WIDE: u32 = 1400;
const TITLE_HEIGHT: u32 = 50;
const LEGEND_WIDTH: u32 = 260;
/// Characters per legend line before wrapping (15 px text is about 8 px per character).
const LEGEND_CHARS: usize = 24;
/// Pixels per character of a panel title, to wrap it to the panel's width.
const PANEL_TITLE_CHAR_WIDTH: usize = 9;
const PANEL_TITLE_LINE: u32 = 20;

type Drawn<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

impl Figure {
    fn rows(&self) -> usize {
        self.panels.len().div_ceil(self.columns.max(1))
    }

    /// The picture's size in pixels: one panel is 1000 wide, a grid 1400, plus rows of panels
    /// about 4:3 below the title.
    fn size(&self) -> (u32, u32) {
        let columns = self.columns.max(1) as u32;
        let width = if columns == 1 { NARROW } else { WIDE };
        let panel_width = (width - LEGEND_WIDTH) / columns;
        let panel_height = match columns {
            1 => 560,
            _ => (panel_width * 3 / 4).clamp(300, 460),
        };
        (width, TITLE_HEIGHT + self.rows() as u32 * panel_height)
    }
}

/// Makes the embedded font the one plotters calls `sans-serif`, once: the machine's fonts are
/// never consulted, so plots look the same everywhere.
fn load_font() -> Result<(), String> {
    static LOADED: OnceLock<bool> = OnceLock::new();
    let loaded = *LOADED.get_or_init(|| {
        register_font(
            FONT,
            FontStyle::Normal,
            include_bytes!("../assets/DejaVuSans.ttf"),
        )
        .is_ok()
    });
    match loaded {
        true => Ok(()),
        false => Err("the embedded DejaVuSans.ttf is not a usable font".into()),
    }
}

fn render(figure: &Figure, path: &Path) -> Result<(), String> {
    load_font()?;
    let root = BitMapBackend::new(path, figure.size()).into_drawing_area();
    let failed = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    draw_figure(figure, &root).map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))
}

fn draw_figure<DB: DrawingBackend>(figure: &Figure, root: &DrawingArea<DB, Shift>) -> Drawn<DB> {
    root.fill(&WHITE)?;
    let (width, _) = root.dim_in_pixel();
    let (title, body) = root.split_vertically(TITLE_HEIGHT);
    let style = TextStyle::from((FONT, 26).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    title.draw_text(
        &figure.title,
        &style,
        (width as i32 / 2, TITLE_HEIGHT as i32 / 2),
    )?;
    let (grid, legend) = body.split_horizontally(width - LEGEND_WIDTH);
    let cells = grid.split_evenly((figure.rows(), figure.columns.max(1)));
    // Every panel reserves room for the longest wrapped title, so that the plots line up.
    let title_chars =
        (width - LEGEND_WIDTH) as usize / figure.columns.max(1) / PANEL_TITLE_CHAR_WIDTH;
    let title_lines = figure
        .panels
        .iter()
        .map(|panel| panel_title(panel, title_chars).len())
        .max()
        .unwrap_or(0);
    for (panel, cell) in figure.panels.iter().zip(&cells) {
        draw_panel(panel, cell, title_chars, title_lines)?;
    }
    draw_legend(&figure.legend, &legend)
}

/// A panel's title in lines of at most `chars` characters; none for an untitled panel.
fn panel_title(panel: &Panel, chars: usize) -> Vec<String> {
    match panel.title.is_empty() {
        true => Vec::new(),
        false => wrap(&panel.title, chars),
    }
}

/// Draws `panel` into `area` below room for `title_lines` lines of its title.
fn draw_panel<DB: DrawingBackend>(
    panel: &Panel,
    area: &DrawingArea<DB, Shift>,
    title_chars: usize,
    title_lines: usize,
) -> Drawn<DB> {
    // The title is drawn by hand, wrapped: plotters' captions do not wrap, and the narrow
    // panels of a wide grid would run their titles into each other.
    let (width, _) = area.dim_in_pixel();
    let lines = panel_title(panel, title_chars);
    let (head, body) = area.split_vertically(10 + PANEL_TITLE_LINE * title_lines as u32);
    let style = TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, line) in lines.iter().enumerate() {
        let y = 8 + (PANEL_TITLE_LINE as usize * i) as i32;
        head.draw_text(line, &style, (width as i32 / 2, y))?;
    }
    // Room for the longest tick label and the rotated axis description.
    let longest_tick = panel
        .y
        .ticks
        .iter()
        .map(|(_, t)| t.chars().count())
        .max()
        .unwrap_or(1);
    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .x_label_area_size(52)
        .y_label_area_size(30 + 9 * longest_tick as u32)
        .build_cartesian_2d(panel.x.clone(), panel.y.clone())?;
    chart
        .configure_mesh()
        .x_desc(panel.x.label.as_str())
        .y_desc(panel.y.label.as_str())
        .x_label_formatter(&|v| panel.x.tick_text(*v))
        .y_label_formatter(&|v| panel.y.tick_text(*v))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .bold_line_style(BLACK.mix(0.1))
        .draw()?;
    for series in &panel.series {
        draw_series(&mut chart, panel, series)?;
    }
    Ok(())
}

fn draw_series<DB: DrawingBackend>(
    chart: &mut ChartContext<DB, Cartesian2d<Axis, Axis>>,
    panel: &Panel,
    series: &Series,
) -> Drawn<DB> {
    let shift = series.dodge * (panel.x.range.end - panel.x.range.start);
    let at = |x: f64, y: f64| (panel.x.at(x) + shift, panel.y.at(y));
    let line: Vec<(f64, f64)> = series.points.iter().map(|p| at(p.x, p.y)).collect();
    let color = series.color;
    match series.look {
        Look::Band => {
            let mut outline: Vec<(f64, f64)> =
                series.points.iter().map(|p| at(p.x, p.high)).collect();
            outline.extend(series.points.iter().rev().map(|p| at(p.x, p.low)));
            chart.draw_series([Polygon::new(outline, color.mix(0.18).filled())])?;
            chart.draw_series([stroke(line, false, color.stroke_width(2))])?;
        }
        Look::Thin => {
            chart.draw_series([stroke(line, false, color.stroke_width(1))])?;
        }
        Look::Marks { dashed, joined } => {
            if joined {
                chart.draw_series([stroke(line.clone(), dashed, color.stroke_width(2))])?;
            }
            let bars = series.points.iter().filter(|p| p.high > p.low);
            chart.draw_series(bars.clone().map(|p| {
                PathElement::new(vec![at(p.x, p.low), at(p.x, p.high)], color.stroke_width(2))
            }))?;
            let ends = bars.flat_map(|p| [at(p.x, p.low), at(p.x, p.high)]);
            chart.draw_series(ends.map(|end| {
                EmptyElement::at(end)
                    + PathElement::new(vec![(-6, 0), (6, 0)], color.stroke_width(2))
            }))?;
            chart.draw_series(line.into_iter().map(|point| marker(point, dashed, color)))?;
        }
        Look::Failed => {
            let span = panel.y.range.end - panel.y.range.start;
            let top = panel.y.range.end - 0.05 * span;
            let crosses = series.points.iter().map(|p| (panel.x.at(p.x) + shift, top));
            chart.draw_series(crosses.map(|point| cross(point, color)))?;
        }
    }
    Ok(())
}

/// A solid or dashed line through `points`.
fn stroke<DB: DrawingBackend, C: Clone + 'static>(
    points: Vec<C>,
    dashed: bool,
    style: ShapeStyle,
) -> DynElement<'static, DB, C> {
    match dashed {
        true => DashedPathElement::new(points, 10, 6, style).into_dyn(),
        false => PathElement::new(points, style).into_dyn(),
    }
}

/// A filled circle, or a triangle for the dashed (second) measure of a norm.
fn marker<DB: DrawingBackend, C: Clone + 'static>(
    at: C,
    dashed: bool,
    color: RGBColor,
) -> DynElement<'static, DB, C> {
    match dashed {
        true => TriangleMarker::new(at, 7, color.filled()).into_dyn(),
        false => Circle::new(at, 5, color.filled()).into_dyn(),
    }
}

fn cross<DB: DrawingBackend, C: Clone + 'static>(
    at: C,
    color: RGBColor,
) -> DynElement<'static, DB, C> {
    Cross::new(at, 7, color.stroke_width(3)).into_dyn()
}

/// The legend column: a sample of each entry's look and its label, wrapped.
fn draw_legend<DB: DrawingBackend>(
    entries: &[LegendEntry],
    area: &DrawingArea<DB, Shift>,
) -> Drawn<DB> {
    let text = TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let mut y = 40;
    for entry in entries {
        draw_sample(area, entry, y)?;
        for line in wrap(&entry.label, LEGEND_CHARS) {
            area.draw_text(&line, &text, (52, y))?;
            y += 20;
        }
        y += 10;
    }
    Ok(())
}

/// What an entry's series looks like, centred at height `y` of the legend column.
fn draw_sample<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entry: &LegendEntry,
    y: i32,
) -> Drawn<DB> {
    let (left, middle, right) = (10, 27, 44);
    let color = entry.color;
    let line = vec![(left, y), (right, y)];
    match entry.look {
        Look::Band => {
            area.draw(&Rectangle::new(
                [(left, y - 7), (right, y + 7)],
                color.mix(0.18).filled(),
            ))?;
            area.draw(&stroke(line, false, color.stroke_width(2)))
        }
        Look::Thin => area.draw(&stroke(line, false, color.stroke_width(1))),
        Look::Marks { dashed, .. } => {
            area.draw(&stroke(line, dashed, color.stroke_width(2)))?;
            area.draw(&marker((middle, y), dashed, color))
        }
        Look::Failed => area.draw(&cross((middle, y), color)),
    }
}

/// `text` in lines of at most `width` characters, broken at spaces where possible.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ') {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::{Path, PathBuf};

    use normlab_model::probe::{SiteStats, Summary};

    use super::*;
    use crate::config::GridPoint;
    use crate::results::{LengthEval, Probe, StepLoss};

    const EXPERIMENT: &str = r#"
description = "Batch norm against group norm at small batches."

[data]
set = "digits"

[model]
kind = "mlp"
hidden = [8, 8]
norm = ["none", "batch", { kind = "group", groups = 4 }]

[train]
batch_size = [2, 8]
seed = [0, 1]
lr = 0.1
samples = 100
"#;

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

    /// A synthetic record of `point`: a decaying loss (exploding after step 5 and cut at step 10
    /// if it diverged), one final evaluation unless it diverged, probes at steps 0, 10 and 20,
    /// and the step time of its norm.
    fn record(experiment: &Experiment, point: &GridPoint, outcome: Outcome) -> RunRecord {
        let norm = norm_labels_of(experiment, point);
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
        let final_eval = Eval {
            step: steps,
            samples: 100,
            valid_loss: 0.5,
            valid_error: outcome.error_percent / 100.0,
            train_mode_loss: None,
            train_mode_error: outcome.train_mode_percent.map(|e| e / 100.0),
            by_length: Vec::new(),
        };
        RunRecord {
            id: point.id.clone(),
            axes: experiment
                .axes
                .iter()
                .map(|a| a.name.clone())
                .zip(point.labels.clone())
                .collect(),
            status: if diverged {
                Status::Diverged
            } else {
                Status::Finished
            },
            reason: diverged.then(|| "the loss became non-finite at step 9".to_string()),
            config: point.run.clone(),
            lr: point.run.lr(),
            losses,
            evals: if diverged {
                Vec::new()
            } else {
                vec![final_eval]
            },
            probes: [0, 10, 20].map(|step| probe(&norm, step)).to_vec(),
            steps,
            samples: 100,
            step_seconds: step_seconds(&norm),
            wall_seconds: 1.5,
        }
    }

    /// The norm label of a grid point (the first axis of the fixtures).
    fn norm_labels_of(experiment: &Experiment, point: &GridPoint) -> String {
        point.labels[experiment.axis("norm").unwrap()].clone()
    }

    /// The synthetic experiment: 3 norms x batch sizes 2, 8 x seeds 0, 1, every run finished
    /// except `none` at batch size 2 with seed 1, which diverged.
    pub(crate) fn fixture() -> (Experiment, Vec<RunRecord>) {
        let experiment =
            Experiment::parse(Path::new("small_batches.toml"), EXPERIMENT.to_string()).unwrap();
        let records = experiment
            .points
            .iter()
            .map(|point| {
                let norm = norm_labels_of(&experiment, point);
                let (batch_size, seed) = (point.run.train.batch_size, point.run.train.seed);
                let outcome = Outcome {
                    error_percent: error_percent(&norm, batch_size, seed),
                    train_mode_percent: train_mode_percent(&norm, batch_size, seed),
                    diverged: norm == "none" && batch_size == 2 && seed == 1,
                };
                record(&experiment, point, outcome)
            })
            .collect();
        (experiment, records)
    }

    const LR_EXPERIMENT: &str = r#"
[data]
set = "digits"

[model]
kind = "mlp"
hidden = [8]
norm = ["none", "layer"]
dropout = [0.0, 0.5]

[train]
batch_size = 10
seed = [0, 1]
lr = [0.01, 0.1, 1.0]
samples = 100
"#;

    /// A learning-rate sweep: without a norm every run at lr 1 diverges; errors fall with the
    /// learning rate (10% at 0.01, 8% at 0.1, 6% at 1, layer norm 1 point lower) and are
    /// evaluated at lengths 64 (the training length) and 256 (3 points worse).
    pub(crate) fn lr_fixture() -> (Experiment, Vec<RunRecord>) {
        let experiment =
            Experiment::parse(Path::new("lr_sweep.toml"), LR_EXPERIMENT.to_string()).unwrap();
        let records = experiment
            .points
            .iter()
            .map(|point| {
                let norm = norm_labels_of(&experiment, point);
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
                let mut record = record(&experiment, point, outcome);
                for eval in &mut record.evals {
                    eval.by_length = [(64, 0.0), (256, 3.0)]
                        .map(|(length, worse)| LengthEval {
                            length,
                            loss: 1.0,
                            error: (error_percent + worse) / 100.0,
                        })
                        .to_vec();
                }
                record
            })
            .collect();
        (experiment, records)
    }

    /// A fresh empty folder under the system's temporary folder.
    pub(crate) fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("normlab-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Width and height from a PNG's IHDR chunk, after checking the signature.
    fn png_size(path: &Path) -> (u32, u32) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(
            &bytes[..8],
            b"\x89PNG\r\n\x1a\n",
            "{} is not a PNG",
            path.display()
        );
        assert_eq!(&bytes[12..16], b"IHDR");
        let number = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        (number(16), number(20))
    }

    /// Draws `records` into a scratch folder and checks the files drawn, in order, with their
    /// pixel sizes, and that nothing else was written. Returns the plots; the caller removes `dir`.
    fn assert_draws(
        experiment: &Experiment,
        records: &[RunRecord],
        name: &str,
        expected: &[(&str, (u32, u32))],
    ) -> (Vec<PlotFile>, PathBuf) {
        let dir = scratch(name);
        let plots = draw_all(experiment, records, &dir).unwrap();
        let files: Vec<&str> = plots.iter().map(|p| p.file.as_str()).collect();
        let wanted: Vec<&str> = expected.iter().map(|(file, _)| *file).collect();
        assert_eq!(files, wanted);
        for (file, size) in expected {
            assert_eq!(png_size(&dir.join(file)), *size, "{file}");
        }
        let pngs = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(pngs, plots.len(), "no other files are written");
        (plots, dir)
    }

    #[test]
    fn draws_the_plots_the_axes_and_records_call_for_at_their_sizes() {
        let (experiment, records) = fixture();
        // Two batch-size panels side by side; one panel; a 2 x 6 grid of sites x runs.
        let (_, dir) = assert_draws(
            &experiment,
            &records,
            "plots",
            &[
                ("loss_curves.png", (1400, 50 + 427)),
                ("error_vs_batch_size.png", (1000, 50 + 560)),
                ("train_vs_eval.png", (1000, 50 + 560)),
                ("percentiles.png", (1400, 50 + 2 * 300)),
                ("step_time.png", (1000, 50 + 560)),
            ],
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sweeps_of_other_axes_get_their_own_plots() {
        let (experiment, records) = lr_fixture();
        // Panels: 6 (dropout x lr) in 3 columns; 2 (dropout); sites x norms; 6; 1; 3 (lr).
        let (plots, dir) = assert_draws(
            &experiment,
            &records,
            "lr-plots",
            &[
                ("loss_curves.png", (1400, 50 + 2 * 300)),
                ("error_vs_lr.png", (1400, 50 + 427)),
                ("percentiles.png", (1400, 50 + 2 * 427)),
                ("error_vs_length.png", (1400, 50 + 2 * 300)),
                ("step_time.png", (1000, 50 + 560)),
                ("error_by_dropout.png", (1400, 50 + 300)),
            ],
        );
        let lr = &plots[1];
        assert!(
            lr.caption.contains("diverged (4) or could not train (0)"),
            "{}",
            lr.caption
        );
        assert!(
            lr.caption.contains("One panel per dropout."),
            "{}",
            lr.caption
        );
        std::fs::remove_dir_all(&dir).unwrap();

        let context = Context::new(&experiment, &records);
        let by_dropout = error_vs_axis(&context, "dropout", "d.png", false).unwrap();
        let x = &by_dropout.figure.panels[0].x;
        assert!(
            !x.log,
            "dropout 0 cannot go on a log scale, nor should categories"
        );
        assert_eq!(x.ticks, [(0.0, "0.0".into()), (1.0, "0.5".into())]);
        let length = error_vs_length(&context).unwrap();
        let layer = &length.figure.panels[0].series[1];
        let means: Vec<(f64, f64)> = layer.points.iter().map(|p| (p.x, p.y)).collect();
        // The first panel is dropout 0, lr 0.01: layer norm's 9% at the training length, 3 more
        // at length 256.
        assert_eq!(length.figure.panels[0].title, "dropout=0.0, lr=0.01");
        assert!((means[0].1 - 9.0).abs() < 1e-4 && (means[1].1 - 12.0).abs() < 1e-4);
        assert_eq!((means[0].0, means[1].0), (64.0, 256.0));
    }

    #[test]
    fn captions_count_the_runs_without_a_result() {
        let (experiment, records) = fixture();
        let context = Context::new(&experiment, &records);
        let plot = error_vs_axis(&context, "batch_size", "e.png", true).unwrap();
        assert!(
            plot.caption.contains("diverged (1) or could not train (0)"),
            "{}",
            plot.caption
        );
        let crosses: Vec<&Series> = plot.figure.panels[0]
            .series
            .iter()
            .filter(|s| s.look == Look::Failed)
            .collect();
        assert_eq!(crosses.len(), 1);
        assert_eq!(crosses[0].points[0].x, 2.0);
        assert_eq!(crosses[0].color, KIND_COLORS[0].1);
    }

    #[test]
    fn error_points_are_means_with_min_max_over_seeds() {
        let (experiment, records) = fixture();
        let context = Context::new(&experiment, &records);
        let plot = error_vs_axis(&context, "batch_size", "e.png", true).unwrap();
        let batch = plot.figure.panels[0]
            .series
            .iter()
            .find(|s| s.color == KIND_COLORS[1].1 && s.look != Look::Failed)
            .unwrap();
        assert_eq!(
            batch.look,
            Look::Marks {
                dashed: false,
                joined: true
            }
        );
        let at_2 = batch.points[0];
        assert_eq!(at_2.x, 2.0);
        assert!((at_2.y - 20.5).abs() < 1e-4 && (at_2.low - 20.0).abs() < 1e-4);
        assert!((at_2.high - 21.0).abs() < 1e-4);
        // Ticks exactly at the batch sizes, on a log scale.
        let x = &plot.figure.panels[0].x;
        assert!(x.log);
        assert_eq!(x.ticks, [(2f64.ln(), "2".into()), (8f64.ln(), "8".into())]);
    }

    #[test]
    fn nothing_to_plot_draws_nothing() {
        let (experiment, _) = fixture();
        let dir = scratch("no-plots");
        assert_eq!(draw_all(&experiment, &[], &dir).unwrap(), Vec::new());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn colours_are_fixed_by_kind_and_variants_sorted() {
        let labels = [
            "group(groups=4)",
            "layer",
            "batch(per_step=30)",
            "none",
            "batch",
            "rms(eps=1)",
        ]
        .map(String::from);
        let palette = Palette::new(&labels);
        let reversed: Vec<String> = labels.iter().rev().cloned().collect();
        for label in &labels {
            assert_eq!(palette.color(label), Palette::new(&reversed).color(label));
        }
        let kind = |k: &str| KIND_COLORS.iter().find(|(n, _)| *n == k).unwrap().1;
        assert_eq!(palette.color("none"), kind("none"));
        assert_eq!(palette.color("batch"), kind("batch"));
        assert_eq!(palette.color("group(groups=4)"), kind("group"));
        assert_eq!(palette.color("rms(eps=1)"), kind("rms"));
        assert_eq!(palette.color("batch(per_step=30)"), VARIANT_COLORS[0]);
    }

    #[test]
    fn loss_band_counts_only_curves_that_reach_each_x() {
        let long = vec![(0.0, 2.0), (10.0, 1.0)];
        let short = vec![(0.0, 4.0), (5.0, 3.0)];
        let band = mean_band(&[long, short]);
        assert_eq!(band.len(), CURVE_POINTS);
        assert_eq!((band[0].y, band[0].low, band[0].high), (3.0, 2.0, 4.0));
        let last = band[CURVE_POINTS - 1];
        assert_eq!((last.x, last.y, last.low, last.high), (10.0, 1.0, 1.0, 1.0));
    }

    #[test]
    fn axes_switch_to_log_beyond_twenty_fold() {
        assert!(!Axis::fit("loss", 0.1, 1.9, true).log);
        let log = Axis::fit("loss", 0.01, 2.0, true);
        assert!(log.log && log.label.ends_with("(log scale)"));
        let texts: Vec<&str> = log.ticks.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            texts,
            ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2"]
        );
        let linear = Axis::fit("error", 0.0, 10.0, false);
        let texts: Vec<&str> = linear.ticks.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["0", "2", "4", "6", "8", "10"]);
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(fmt_number(0.001), "0.001");
        assert_eq!(fmt_number(64.0), "64");
        assert_eq!(fmt_number(0.1 + 0.2), "0.3");
        assert_eq!(fmt_number(1.25), "1.25");
    }
}
