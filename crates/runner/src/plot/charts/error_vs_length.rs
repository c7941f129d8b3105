use crate::analysis::{distinct, errors_by_length, other_axes};
use crate::plot::axis::Axis;
use crate::plot::charts::{Measure, SpreadPlot, spread_plot};
use crate::plot::figure::Stroke;
use crate::plot::{Context, Plot};
use crate::results::RunRecord;

/// Final error vs the evaluation sequence length, one series per norm; the training length
/// contributes the ordinary validation error.
pub(crate) fn error_vs_length(context: &Context) -> Option<Plot> {
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
                stroke: Stroke::Solid,
                values: &values,
            }],
            failed_x: None,
        },
    )
}
