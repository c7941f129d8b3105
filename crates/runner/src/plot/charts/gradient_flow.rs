//! The loss's gradient at every step of a recurrence (recurrent BN's Figure 1).

use crate::plot::axis::Axis;
use crate::plot::charts::{band_legend, band_per_norm, facet_sentence};
use crate::plot::figure::{Figure, band_of, extent, x_of};
use crate::plot::{Context, Plot};
use crate::results::{GradientFlow, RunRecord};

/// Recurrent BN's Figure 1: log10 of the loss's gradient norm with respect to the hidden state
/// at every time step, relative to the last step's, against the steps back from the last: per
/// norm the mean over seeds with a band from min to max; a panel at initialization and one
/// after training where measured, times the values of the other varying axes.
pub(crate) fn gradient_flow(context: &Context) -> Option<Plot> {
    let facet_axes = context.facet_axes(&[]);
    let states: Vec<(bool, &str)> = [(false, "at initialization"), (true, "after training")]
        .into_iter()
        .filter(|&(trained, _)| {
            let measured = |r: &RunRecord| r.gradient_flow.iter().any(|f| (f.step > 0) == trained);
            context.records.iter().any(measured)
        })
        .collect();
    let mut panels = Vec::new();
    for facet in context.facets(&facet_axes) {
        for &(trained, when) in &states {
            let series = band_per_norm(context, &facet_axes, &facet, |r| {
                let flows = r.gradient_flow.iter();
                let when = flows.filter(|flow| (flow.step > 0) == trained);
                when.map(log_relative).collect()
            });
            let title = match facet.is_empty() {
                true => when.to_string(),
                false => format!("{facet}, {when}"),
            };
            panels.push((title, series));
        }
    }
    let all = || panels.iter().flat_map(|(_, series)| series);
    let (_, farthest) = extent(all(), x_of)?;
    let (low, high) = extent(all(), band_of)?;
    let x = Axis::fit("steps back from the last, T - t", 0.0, farthest, false);
    let y = Axis::fit(
        "log10 ||dLoss/dh_t|| / ||dLoss/dh_T||",
        low,
        high.max(0.0),
        false,
    );
    let mut figure = Figure::grid(
        "Gradient flow back through the recurrence".into(),
        panels,
        x,
        y,
    );
    figure.legend = band_legend(context, |r| !r.gradient_flow.is_empty());
    Some(Plot {
        file: "gradient_flow.png".into(),
        caption: format!(
            "log10 of the norm of the loss's gradient with respect to the hidden state h_t, \
             divided by its norm at the last step T (where the loss is), against T - t, on the \
             first training batch: the line is the mean over seeds, the band spans min to max \
             over seeds. A line that falls to the right is a gradient that vanishes back in time \
             (recurrent BN, Cooijmans et al. 2017, Figure 1); one that ends has underflowed to \
             0. The first steps, until every sequence of the batch has left the blank start they \
             share, are left out: there a norm's statistics come from a few sequences or \
             none.{}",
            facet_sentence(&facet_axes)
        ),
        figure,
    })
}

/// `(steps back, log10 of the gradient relative to the last step's)`, nearest the last step
/// first; a ratio that underflowed to 0 ends the curve.
fn log_relative(flow: &GradientFlow) -> Vec<(f64, f64)> {
    let mut ratios = flow.relative_to_last();
    ratios.reverse();
    ratios
        .into_iter()
        .take_while(|&(_, ratio)| ratio > 0.0)
        .map(|(back, ratio)| (back as f64, ratio.log10()))
        .collect()
}
