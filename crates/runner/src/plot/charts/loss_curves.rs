//! The training loss over examples seen, per norm, with a band over seeds.

use crate::analysis::Spread;
use crate::axes::AxisKey;
use crate::plot::axis::Axis;
use crate::plot::charts::{band_legend, facet_sentence};
use crate::plot::figure::{Figure, Look, Point, Series, band_of, extent, x_of};
use crate::plot::{Context, Plot};
use crate::result_set::series_label;
use crate::results::RunRecord;

/// Points on the common x grid of the loss curves of one norm.
pub(crate) const CURVE_POINTS: usize = 200;

/// Training loss vs examples seen: per norm the mean over seeds of the smoothed loss, with a
/// band from min to max over seeds; one panel per value of the other varying axes.
pub(crate) fn loss_curves(context: &Context) -> Option<Plot> {
    let facet_axes = context.facet_axes(&[]);
    let panels: Vec<(String, Vec<Series>)> = context
        .facets(&facet_axes)
        .into_iter()
        .map(|facet| {
            let series = band_per_norm(context, &facet_axes, &facet, |r| vec![smoothed_loss(r)]);
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
    figure.legend = band_legend(context, |r| r.losses.iter().any(|l| l.loss.is_finite()));
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

/// A run's loss is smoothed over 1/SMOOTHING_DIVISOR of its recorded points (steps, or windows
/// of steps in long runs; at least one): enough to see the trend through mini-batch noise, short
/// enough to keep it.
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

/// One band per norm of `facet`: the mean, min and max of the non-empty curves that
/// `curves_of` gives for each of the norm's runs (one per seed, or several per run).
pub(crate) fn band_per_norm(
    context: &Context,
    facet_axes: &[AxisKey],
    facet: &str,
    curves_of: impl Fn(&RunRecord) -> Vec<Vec<(f64, f64)>>,
) -> Vec<Series> {
    context
        .series
        .iter()
        .filter_map(|norm| {
            let curves: Vec<Vec<(f64, f64)>> = context
                .in_facet(facet_axes, facet)
                .filter(|r| series_label(r) == *norm)
                .flat_map(&curves_of)
                .filter(|curve| !curve.is_empty())
                .collect();
            let points = mean_band(&curves);
            let (color, variant) = (context.palette.color(norm), context.variant(norm));
            (!points.is_empty()).then(|| Series::new(color, Look::Band, variant, points))
        })
        .collect()
}

/// Mean, min and max of the curves on a common grid of x values; at each x only the curves
/// that reach it count, so a run that stopped early does not drag the mean.
pub(crate) fn mean_band(curves: &[Vec<(f64, f64)>]) -> Vec<Point> {
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
