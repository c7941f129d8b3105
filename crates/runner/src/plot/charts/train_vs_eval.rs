use crate::analysis::{
    final_error, final_precise_error, final_train_mode_error, norm_label, other_axes, varies,
};
use crate::plot::charts::{Measure, SpreadPlot, XPlacement, pair, spread_plot};
use crate::plot::figure::Stroke;
use crate::plot::{Context, Plot};
use crate::results::RunRecord;

/// Batch norm's error in eval mode (running statistics), in train mode (batch statistics) and,
/// where recorded, with PreciseBN's statistics, vs the batch size, or vs the other varying axis
/// without one.
pub(crate) fn train_vs_eval(context: &Context) -> Option<Plot> {
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
    let precise = |r: &RunRecord| pair(placement.of(r), final_precise_error(r));
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
    let with_precise = context
        .records
        .iter()
        .any(|r| final_precise_error(r).is_some());
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
            facet_axes: other_axes(context.experiment, &["norm", "seed", name.as_str()]),
            norms,
            measures,
            failed_x: Some(&placement),
            dodge_norms: true,
        },
    )
}
