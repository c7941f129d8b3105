use crate::analysis::{describe_axis, final_error, other_axes, varies};
use crate::plot::charts::{Measure, SpreadPlot, XPlacement, pair, spread_plot};
use crate::plot::figure::Stroke;
use crate::plot::{Context, Plot};
use crate::results::RunRecord;

/// Final validation error vs axis `name` (log x where `allow_log` and the values permit, else
/// categories), one series per norm, failed runs as crosses.
pub(crate) fn error_vs_axis(
    context: &Context,
    name: &str,
    file: &str,
    allow_log: bool,
) -> Option<Plot> {
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
                stroke: Stroke::Solid,
                values: &values,
            }],
            failed_x: Some(&placement),
            dodge_norms: true,
        },
    )
}
