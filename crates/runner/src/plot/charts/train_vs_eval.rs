use crate::analysis::{final_error, final_train_mode_error, norm_label, other_axes, varies};
use crate::plot::charts::{Measure, SpreadPlot, XPlacement, pair, spread_plot};
use crate::plot::{Context, Plot};
use crate::results::RunRecord;

/// Batch norm's error in eval mode (running statistics) and in train mode (batch statistics)
/// vs the batch size, or vs the other varying axis without one.
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
    spread_plot(
        context,
        SpreadPlot {
            file: "train_vs_eval.png".into(),
            title: "Batch norm: eval mode vs train mode".into(),
            caption: "Final validation error (%) of each batch-norm variant evaluated two ways: \
                      eval mode with the running statistics (solid line, circles) and train mode \
                      with the statistics of each evaluation batch at the training batch size \
                      (dashed line, triangles); mean over seeds with bars from min to max."
                .into(),
            x: placement.axis(),
            y_label: "validation error (%)",
            from_zero: false,
            joined: placement.log,
            facet_axes: other_axes(context.experiment, &["norm", "seed", name.as_str()]),
            norms,
            measures: vec![
                Measure {
                    name: Some("eval mode"),
                    dashed: false,
                    values: &eval_mode,
                },
                Measure {
                    name: Some("train mode"),
                    dashed: true,
                    values: &train_mode,
                },
            ],
            failed_x: Some(&placement),
        },
    )
}
