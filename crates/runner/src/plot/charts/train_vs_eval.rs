//! Batch norm scored in eval mode, train mode, with PreciseBN and folded, side by side.

use crate::analysis::{final_error, final_score};
use crate::axes::AxisKey;
use crate::plot::charts::{Measure, SpreadPlot, XPlacement, pair, spread_plot};
use crate::plot::figure::Stroke;
use crate::plot::{Context, Plot};
use crate::result_set::series_label;
use crate::results::{EvalMode, RunRecord};

/// Batch norm's error in eval mode (running statistics), in train mode (batch statistics) and,
/// where recorded, with PreciseBN's statistics, vs the batch size, or vs the other varying axis
/// without one.
pub(crate) fn train_vs_eval(context: &Context) -> Option<Plot> {
    let train_mode_error = |r: &RunRecord| final_score(r, EvalMode::TrainMode);
    let precise_error = |r: &RunRecord| final_score(r, EvalMode::Precise);
    let norms: Vec<String> = context
        .series
        .iter()
        .filter(|norm| {
            context
                .records
                .iter()
                .any(|r| series_label(r) == **norm && train_mode_error(r).is_some())
        })
        .cloned()
        .collect();
    if norms.is_empty() {
        return None;
    }
    let key = match context.set.varies(&AxisKey::BatchSize) {
        true => AxisKey::BatchSize,
        false => (context.facet_axes(&[]).into_iter().next()).unwrap_or(AxisKey::BatchSize),
    };
    let placement = XPlacement::new(context, &key, true);
    let eval_mode = |r: &RunRecord| pair(placement.of(r), final_error(r));
    let train_mode = |r: &RunRecord| pair(placement.of(r), train_mode_error(r));
    let precise = |r: &RunRecord| pair(placement.of(r), precise_error(r));
    let mut measures = vec![
        Measure {
            name: Some("eval mode"),
            stroke: Stroke::Solid,
            values: &eval_mode,
        },
        Measure {
            name: Some("train mode"),
            stroke: Stroke::Dashed,
            values: &train_mode,
        },
    ];
    let with_precise = context.records.iter().any(|r| precise_error(r).is_some());
    let caption = match with_precise {
        false => "Final validation error (%) of each batch-norm variant evaluated two ways: \
                  eval mode with the running statistics (solid line, circles) and train mode \
                  with the statistics of each evaluation batch at the training batch size \
                  (dashed line, triangles); mean over seeds with bars from min to max."
            .to_string(),
        true => {
            measures.push(Measure {
                name: Some("PreciseBN"),
                stroke: Stroke::Dotted,
                values: &precise,
            });
            "Final validation error (%) of each norm with batch statistics evaluated three \
             ways: eval mode with the running statistics, an exponential moving average (solid \
             line, circles); train mode with the statistics of each evaluation batch (dashed \
             line, triangles); eval mode with PreciseBN's statistics, the equal-weight average \
             over many training batches with the final weights (dotted line, squares); mean \
             over seeds with bars from min to max."
                .to_string()
        }
    };
    spread_plot(
        context,
        SpreadPlot {
            file: "train_vs_eval.png".into(),
            title: "Batch norm: eval mode vs train mode".into(),
            caption,
            x: placement.axis(),
            y_label: "validation error (%)",
            from_zero: false,
            joined: placement.log,
            facet_axes: context.facet_axes(std::slice::from_ref(&key)),
            norms,
            measures,
            failed_x: Some(&placement),
            reference: context.chance(),
            dodge_norms: true,
        },
    )
}
