//! The final error against the axis a sweep varies (batch size, learning rate, init scale ...).

use crate::analysis::final_error;
use crate::axes::AxisKey;
use crate::plot::charts::{Measure, SpreadPlot, XPlacement, pair, spread_plot};
use crate::plot::figure::Stroke;
use crate::plot::{Context, Plot};
use crate::results::RunRecord;

/// Final validation error vs axis `key` (log x where `allow_log` and the values permit, else
/// categories), one series per norm, failed runs as crosses: `error_vs_<axis>.png` for the
/// axes that may have a log x, `error_by_<axis>.png` for the others.
pub(crate) fn error_vs_axis(context: &Context, key: &AxisKey, allow_log: bool) -> Option<Plot> {
    if !context.set.varies(key) {
        return None;
    }
    let file = match allow_log {
        true => format!("error_vs_{key}.png"),
        false => format!("error_by_{key}.png"),
    };
    let placement = XPlacement::new(context, key, allow_log);
    let values = |r: &RunRecord| pair(placement.of(r), final_error(r));
    let description = key.describe();
    spread_plot(
        context,
        SpreadPlot {
            file,
            title: format!("Final validation error vs {description}"),
            caption: format!(
                "Validation error (%) at the end of training vs {description}, one series per \
                 norm: mean over seeds (marker) with bars from min to max over seeds."
            ),
            x: placement.axis(),
            y_label: "validation error (%)",
            from_zero: false,
            joined: placement.log,
            facet_axes: context.facet_axes(std::slice::from_ref(key)),
            norms: context.series.clone(),
            measures: vec![Measure {
                name: None,
                stroke: Stroke::Solid,
                values: &values,
            }],
            failed_x: Some(&placement),
            reference: context.chance(),
            dodge_norms: true,
        },
    )
}
