//! PNG plots of an experiment's results.
//!
//! Which plots are drawn depends on the experiment's axes and on what its runs recorded (see
//! [`draw_all`]). Every chart (one file each under `charts/`) first describes its plot in data
//! terms, as a `Figure` (`figure.rs`) of panels holding series, and then the one renderer
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

use crate::analysis::{facets, in_facet};
use crate::axes::AxisKey;
use crate::error::RunnerError;
use crate::plot::figure::{Figure, Reference};
use crate::plot::palette::Palette;
use crate::result_set::ResultSet;
use crate::results::{PlotFile, RunRecord};

/// Draws every plot that the axes and records of `set` call for into `out_dir` and returns them
/// in drawing order:
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
pub fn draw_all(set: &ResultSet, out_dir: &Path) -> Result<Vec<PlotFile>, RunnerError> {
    let context = Context::new(set);
    let mut plots: Vec<Plot> = Vec::new();
    plots.extend(charts::loss_curves(&context));
    plots.extend(charts::error_vs_axis(&context, &AxisKey::BatchSize, true));
    plots.extend(charts::train_vs_eval(&context));
    plots.extend(charts::error_vs_axis(&context, &AxisKey::Lr, true));
    plots.extend(charts::error_vs_axis(&context, &AxisKey::InitScale, true));
    plots.extend(charts::percentiles(&context));
    plots.extend(charts::error_vs_length(&context));
    plots.extend(charts::bits_vs_length(&context));
    plots.extend(charts::gradient_flow(&context));
    plots.extend(charts::step_time(&context));
    for axis in set.other_axes(&AxisKey::WITH_VIEWS_OF_THEIR_OWN) {
        plots.extend(charts::error_vs_axis(&context, &axis, false));
    }
    if plots.is_empty() {
        return Ok(Vec::new());
    }
    // Every title names the model and the data the runs share.
    let setup = set.setup();
    for plot in &mut plots {
        if !setup.is_empty() {
            plot.figure.title = format!("{} ({setup})", plot.figure.title);
        }
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

/// A plot ready to render.
pub(crate) struct Plot {
    pub(crate) file: String,
    pub(crate) caption: String,
    pub(crate) figure: Figure,
}

/// Everything the plot builders need about the results.
pub(crate) struct Context<'a> {
    pub(crate) set: &'a ResultSet,
    pub(crate) records: &'a [RunRecord],
    /// Series labels (norms; in a comparison, folders' norms) in grid order: the order of
    /// series and legend entries.
    pub(crate) series: Vec<String>,
    pub(crate) palette: Palette,
}

impl<'a> Context<'a> {
    pub(crate) fn new(set: &'a ResultSet) -> Self {
        let series = set.series();
        Self {
            set,
            records: &set.records,
            palette: Palette::new(&series),
            series: series.into_iter().map(|(label, _)| label).collect(),
        }
    }

    /// The place of series `label` among the plot's series (its dash pattern and marker).
    pub(crate) fn variant(&self, label: &str) -> usize {
        self.series.iter().position(|s| s == label).unwrap_or(0)
    }

    /// Chance level for an error plot, in percent: guessing one of the classes uniformly,
    /// from the largest class count the runs recorded.
    pub(crate) fn chance(&self) -> Option<Reference> {
        let classes = self.records.iter().filter_map(|r| r.classes).max()?;
        let value = 100.0 * (1.0 - 1.0 / classes as f64);
        let label = format!("chance ({classes} classes)");
        Some(Reference { value, label })
    }

    /// The records whose values of `axes` are described by `facet`.
    pub(crate) fn in_facet<'b>(
        &'b self,
        axes: &'b [AxisKey],
        facet: &'b str,
    ) -> impl Iterator<Item = &'a RunRecord> + 'b {
        in_facet(self.records, axes, facet)
    }

    /// The distinct values of `axes` over the records, in record (grid) order: the panels.
    pub(crate) fn facets(&self, axes: &[AxisKey]) -> Vec<String> {
        facets(self.records, axes)
    }

    /// The other axes with several values, except `exclude`, the norm and the seed.
    pub(crate) fn facet_axes(&self, exclude: &[AxisKey]) -> Vec<AxisKey> {
        let mut excluded = vec![AxisKey::Norm, AxisKey::Seed];
        excluded.extend_from_slice(exclude);
        self.set.other_axes(&excluded)
    }
}
