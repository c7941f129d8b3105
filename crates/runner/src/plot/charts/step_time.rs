//! The time of a training step per norm, and the share its norm layers take.

use crate::analysis::{norm_ms, step_ms};
use crate::axes::AxisKey;
use crate::plot::charts::{Measure, SpreadPlot, XPlacement, pair, spread_plot};
use crate::plot::figure::Stroke;
use crate::plot::{Context, Plot};
use crate::results::RunRecord;

/// Median step time per norm: vs batch size when it varies, else one position per norm;
/// pooled over every other axis.
pub(crate) fn step_time(context: &Context) -> Option<Plot> {
    if !context.set.varies(&AxisKey::Norm) {
        return None;
    }
    let by_batch = context.set.varies(&AxisKey::BatchSize);
    let key = if by_batch {
        AxisKey::BatchSize
    } else {
        AxisKey::Norm
    };
    let placement = XPlacement::new(context, &key, true);
    let values = |r: &RunRecord| pair(placement.of(r), step_ms(r));
    let in_norms = |r: &RunRecord| pair(placement.of(r), norm_ms(r));
    let grouping = if by_batch { " and batch size" } else { "" };
    let timed = context.records.iter().any(|r| norm_ms(r).is_some());
    let mut measures = vec![Measure {
        name: timed.then_some("whole step"),
        stroke: Stroke::Solid,
        values: &values,
    }];
    if timed {
        measures.push(Measure {
            name: Some("in norm layers"),
            stroke: Stroke::Dashed,
            values: &in_norms,
        });
    }
    // The kernel paths are what a timing experiment compares: never pooled.
    let kernels = AxisKey::NormKernels;
    let facet_axes: Vec<AxisKey> = match context.set.varies(&kernels) {
        true => vec![kernels],
        false => Vec::new(),
    };
    let norm_sentence = match timed {
        true => {
            " Dashed: the part of the step spent in the norm layers, forward and backward, \
                 timed around the layers themselves (median over steps)."
        }
        false => "",
    };
    spread_plot(
        context,
        SpreadPlot {
            file: "step_time.png".into(),
            title: "Training step time".into(),
            caption: format!(
                "Median wall time of one training step (forward, backward and update) of each \
                 run: mean over all runs of a norm{grouping} (marker) with bars from min to max, \
                 pooled over the other axes.{norm_sentence}"
            ),
            x: placement.axis(),
            y_label: "step time (ms)",
            from_zero: true,
            joined: by_batch,
            facet_axes,
            norms: context.series.clone(),
            measures,
            failed_x: None,
            reference: None,
            dodge_norms: by_batch,
        },
    )
    .map(|mut plot| {
        // Norm names along x need the full width.
        if !by_batch {
            plot.figure.columns = 1;
        }
        plot
    })
}
