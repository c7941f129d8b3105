//! A language model's error and bits per character against the evaluation window's length.

use crate::analysis::{LengthScore, scores_by_length};
use crate::plot::axis::Axis;
use crate::plot::charts::{Measure, SpreadPlot, spread_plot};
use crate::plot::figure::Stroke;
use crate::plot::{Context, Plot};
use crate::result_set::distinct;
use crate::results::RunRecord;

/// Final error vs the evaluation sequence length, one series per norm; the training length
/// contributes the ordinary validation error.
pub(crate) fn error_vs_length(context: &Context) -> Option<Plot> {
    by_length(
        context,
        ScoreChart {
            file: "error_vs_length.png",
            title: "Final validation error vs evaluation length",
            what: "Validation error (%)",
            y_label: "validation error (%)",
            score: |s| s.error,
            chance: true,
        },
    )
}

/// Final bits per character vs the evaluation sequence length: the language model's own
/// measure, which a wrong guess's confidence moves and the error rate does not see.
pub(crate) fn bits_vs_length(context: &Context) -> Option<Plot> {
    by_length(
        context,
        ScoreChart {
            file: "bits_vs_length.png",
            title: "Final bits per character vs evaluation length",
            what: "Validation cross-entropy in bits per character",
            y_label: "bits per character",
            score: |s| s.bits,
            chance: false,
        },
    )
}

/// One score of the runs evaluated at several lengths, and how the chart names it.
struct ScoreChart {
    file: &'static str,
    title: &'static str,
    /// The caption's name of the score.
    what: &'static str,
    y_label: &'static str,
    score: fn(&LengthScore) -> f64,
    /// An error rate: draw chance level.
    chance: bool,
}

fn by_length(context: &Context, chart: ScoreChart) -> Option<Plot> {
    let values = |r: &RunRecord| -> Vec<(f64, f64)> {
        scores_by_length(r)
            .iter()
            .map(|s| (s.length as f64, (chart.score)(s)))
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
            file: chart.file.into(),
            title: chart.title.into(),
            caption: format!(
                "{} at the end of training on evaluation sequences of each length (the \
                 training length gives the ordinary validation score), one series per norm: \
                 mean over seeds with bars from min to max.",
                chart.what
            ),
            x: Axis::log_at("evaluation sequence length (steps, log scale)", &lengths),
            y_label: chart.y_label,
            from_zero: false,
            joined: true,
            facet_axes: context.facet_axes(&[]),
            norms: context.series.clone(),
            measures: vec![Measure {
                name: None,
                stroke: Stroke::Solid,
                values: &values,
            }],
            failed_x: None,
            reference: chart.chance.then(|| context.chance()).flatten(),
            dodge_norms: true,
        },
    )
}
