//! PNG plots of an experiment's results.
//!
//! Which plots are drawn depends on the experiment's axes and on what its runs recorded (see
//! [`draw_all`]). Every chart (one file each under `charts/`) first describes its plot in data
//! terms, as a [`Figure`](figure::Figure) of panels holding series, and then the one renderer
//! (`render.rs`, the only file that speaks plotters) draws it, so that all plots share layout,
//! fonts, axis handling and the colour of each norm.

mod axis;
mod charts;
mod figure;
mod palette;
mod render;
#[cfg(test)]
mod tests;

use std::path::Path;

use crate::analysis::{facets, in_facet, norm_labels, other_axes};
use crate::config::Experiment;
use crate::error::RunnerError;
use crate::plot::figure::Figure;
use crate::plot::palette::Palette;
use crate::results::{PlotFile, RunRecord};

/// Draws every plot that `experiment`'s axes and `records` call for into `out_dir` and returns
/// them in drawing order:
///
/// - `loss_curves.png`: training loss vs examples seen, whenever a run recorded losses;
/// - `error_vs_batch_size.png`, `error_vs_lr.png`, `error_vs_init_scale.png`: final error vs
///   that axis, when it has more than one value;
/// - `train_vs_eval.png`: batch norm's eval-mode vs train-mode error, when recorded;
/// - `percentiles.png`: activation percentiles over training, when runs were probed;
/// - `error_vs_length.png`, `bits_vs_length.png`: error and bits per character vs evaluation
///   length, when evaluated at several lengths;
/// - `gradient_flow.png`: the gradient's norm at every step of a recurrence, when measured;
/// - `step_time.png`: step time per norm, when the norm varies;
/// - `error_by_<axis>.png`: final error per value of any other axis with several values.
///
/// A plot without data is skipped, so an unfinished sweep gets fewer plots, never empty ones.
pub fn draw_all(
    experiment: &Experiment,
    records: &[RunRecord],
    out_dir: &Path,
) -> Result<Vec<PlotFile>, RunnerError> {
    let context = Context::new(experiment, records);
    let mut plots: Vec<Plot> = Vec::new();
    plots.extend(charts::loss_curves(&context));
    plots.extend(charts::error_vs_axis(
        &context,
        "batch_size",
        "error_vs_batch_size.png",
        true,
    ));
    plots.extend(charts::train_vs_eval(&context));
    plots.extend(charts::error_vs_axis(
        &context,
        "lr",
        "error_vs_lr.png",
        true,
    ));
    plots.extend(charts::error_vs_axis(
        &context,
        "init_scale",
        "error_vs_init_scale.png",
        true,
    ));
    plots.extend(charts::percentiles(&context));
    plots.extend(charts::error_vs_length(&context));
    plots.extend(charts::bits_vs_length(&context));
    plots.extend(charts::gradient_flow(&context));
    plots.extend(charts::step_time(&context));
    for axis in other_axes(experiment, &COVERED_AXES) {
        plots.extend(charts::error_vs_axis(
            &context,
            &axis,
            &format!("error_by_{axis}.png"),
            false,
        ));
    }
    if plots.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(out_dir).map_err(RunnerError::io(out_dir))?;
    plots
        .into_iter()
        .map(|plot| {
            render::render(&plot.figure, &out_dir.join(&plot.file))?;
            Ok(PlotFile {
                file: plot.file,
                title: plot.figure.title,
                caption: plot.caption,
            })
        })
        .collect()
}

/// Axes that have plots of their own; every other axis with several values gets `error_by_`.
const COVERED_AXES: [&str; 5] = ["seed", "norm", "batch_size", "lr", "init_scale"];

/// A plot ready to render.
pub(crate) struct Plot {
    pub(crate) file: String,
    pub(crate) caption: String,
    pub(crate) figure: Figure,
}

/// Everything the plot builders need about the experiment.
pub(crate) struct Context<'a> {
    pub(crate) experiment: &'a Experiment,
    pub(crate) records: &'a [RunRecord],
    /// Norm labels in grid order: the order of series and legend entries.
    pub(crate) norms: Vec<String>,
    pub(crate) palette: Palette,
}

impl<'a> Context<'a> {
    pub(crate) fn new(experiment: &'a Experiment, records: &'a [RunRecord]) -> Self {
        let norms = norm_labels(experiment);
        Self {
            experiment,
            records,
            palette: Palette::new(&norms),
            norms,
        }
    }

    /// The records whose values of `axes` are described by `facet`.
    pub(crate) fn in_facet<'b>(
        &'b self,
        axes: &'b [String],
        facet: &'b str,
    ) -> impl Iterator<Item = &'a RunRecord> + 'b {
        in_facet(self.records, axes, facet)
    }

    /// The distinct values of `axes` over the records, in record (grid) order: the panels.
    pub(crate) fn facets(&self, axes: &[String]) -> Vec<String> {
        facets(self.records, axes)
    }
}
