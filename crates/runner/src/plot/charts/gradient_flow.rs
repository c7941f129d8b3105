use crate::plot::axis::Axis;
use crate::plot::charts::{Measure, SpreadPlot, spread_plot};
use crate::plot::figure::Stroke;
use crate::plot::{Context, Plot};
use crate::results::RunRecord;

/// Recurrent BN's Figure 1: log10 of the loss's gradient norm with respect to the hidden state
/// at every time step, at initialization (dashed) and after training (solid), one series per
/// norm.
pub(crate) fn gradient_flow(context: &Context) -> Option<Plot> {
    let at = |trained: bool| {
        move |r: &RunRecord| -> Vec<(f64, f64)> {
            r.gradient_flow
                .iter()
                .filter(|flow| (flow.step > 0) == trained)
                .flat_map(|flow| flow.norms.iter().enumerate())
                .filter(|(_, norm)| **norm > 0.0)
                .map(|(t, norm)| ((t + 1) as f64, f64::from(*norm).log10()))
                .collect()
        }
    };
    let (initial, trained) = (at(false), at(true));
    let steps = context
        .records
        .iter()
        .flat_map(|r| r.gradient_flow.iter().map(|flow| flow.norms.len()))
        .max()?;
    spread_plot(
        context,
        SpreadPlot {
            file: "gradient_flow.png".into(),
            title: "Gradient flow back through the recurrence".into(),
            caption: "log10 of the norm of the loss's gradient with respect to the hidden state \
                      h_t at each time step t (the loss is on the last step), on the first \
                      training batch, at initialization (dashed) and after training (solid), one \
                      series per norm: mean over seeds with bars from min to max. A line that \
                      falls towards small t is a gradient that vanishes back in time (recurrent \
                      BN, Cooijmans et al. 2017, Figure 1)."
                .into(),
            x: Axis::fit("time step t", 1.0, steps as f64, false),
            y_label: "log10 ||dLoss/dh_t||",
            from_zero: false,
            joined: true,
            facet_axes: context.facet_axes(&[]),
            norms: context.series.clone(),
            measures: vec![
                Measure {
                    name: Some("initialization"),
                    stroke: Stroke::Dashed,
                    values: &initial,
                },
                Measure {
                    name: Some("trained"),
                    stroke: Stroke::Solid,
                    values: &trained,
                },
            ],
            failed_x: None,
            reference: None,
            dodge_norms: true,
        },
    )
}
