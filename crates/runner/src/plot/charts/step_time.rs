use crate::analysis::{step_ms, varies};
use crate::plot::charts::{Measure, SpreadPlot, XPlacement, pair, spread_plot};
use crate::plot::figure::Stroke;
use crate::plot::{Context, Plot};
use crate::results::RunRecord;

/// Median step time per norm: vs batch size when it varies, else one position per norm;
/// pooled over every other axis.
pub(crate) fn step_time(context: &Context) -> Option<Plot> {
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
                stroke: Stroke::Solid,
                values: &values,
            }],
            failed_x: None,
        },
    )
}
