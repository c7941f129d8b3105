//! The `README.md` report of an experiment's results: how they were produced, the config, the
//! plots, a table of final metrics and statements computed from those metrics.
//!
//! Every number is computed here from the run records, with the same helpers the plots use;
//! nothing is hand-written. Where an expected effect is absent or within the spread over seeds,
//! the statement says so.

pub(crate) mod findings;
pub(crate) mod headline;

use std::path::Path;

use crate::analysis::{
    FINAL_METRIC, Spread, final_score, fmt_duration, last_score, norm_ms, step_ms,
};
use crate::axes::AxisKey;
use crate::error::RunnerError;
use crate::report::findings::findings;
use crate::report::headline::headline;
use crate::result_set::{ResultSet, distinct};
use crate::results::{EvalMode, PlotFile, RunRecord, Status, write_atomically};

/// Writes `out_dir/README.md` for `set`, linking `plots` (drawn into the same folder).
pub fn write(
    set: &ResultSet,
    out_dir: &Path,
    plots: &[PlotFile],
    command: &str,
    total_wall_seconds: Option<f64>,
) -> Result<(), RunnerError> {
    let text = text(set, plots, command, total_wall_seconds);
    let path = out_dir.join("README.md");
    write_atomically(&path, text.as_bytes()).map_err(RunnerError::io(&path))
}

/// The report of `set`, linking `plots`. `command` is the command line that produced the
/// results; without `total_wall_seconds` the report gives the sum of the runs' own wall times
/// instead.
pub fn text(
    set: &ResultSet,
    plots: &[PlotFile],
    command: &str,
    total_wall_seconds: Option<f64>,
) -> String {
    [
        header(set),
        headline(set),
        provenance(set, command, total_wall_seconds),
        config(set),
        plot_section(plots),
        table(set),
        failures(&set.records),
        findings(set),
    ]
    .concat()
}

fn header(set: &ResultSet) -> String {
    match set.description.is_empty() {
        true => format!("# {}\n\n", set.name),
        false => format!("# {}\n\n{}\n\n", set.name, set.description),
    }
}

fn provenance(set: &ResultSet, command: &str, total_wall_seconds: Option<f64>) -> String {
    let records = &set.records;
    let wall = match total_wall_seconds {
        Some(seconds) => format!("Total wall time: {}.", fmt_duration(seconds)),
        None => format!(
            "Total wall time: not recorded (the sweep was resumed, so its runs were not trained \
             in one go); the sum of the runs' wall times is {}.",
            fmt_duration(records.iter().map(|r| r.wall_seconds).sum())
        ),
    };
    let count = |status| records.iter().filter(|r| r.status == status).count();
    format!(
        "## How these results were produced\n\n```sh\n{}\n```\n\n{wall}\n\n{} of the {} runs of \
         the grid have a record: {} finished, {} diverged, {} impossible.\n\n",
        command.trim(),
        records.len(),
        set.grid.len(),
        count(Status::Finished),
        count(Status::Diverged),
        count(Status::Impossible),
    )
}

/// The experiment file, for a single experiment's results.
fn config(set: &ResultSet) -> String {
    match &set.config_text {
        Some(text) => format!("## Config\n\n```toml\n{}\n```\n\n", text.trim()),
        None => String::new(),
    }
}

pub(crate) fn plot_section(plots: &[PlotFile]) -> String {
    let mut text = String::from("## Plots\n\n");
    if plots.is_empty() {
        text.push_str("No plots: no run has recorded anything to plot yet.\n\n");
    }
    for plot in plots {
        text.push_str(&format!(
            "### {title}\n\n![{title}]({file})\n\n{caption}\n\n",
            title = plot.title,
            file = plot.file,
            caption = plot.caption
        ));
    }
    text
}

// ---------------------------------------------------------------------------------------------
// The table: one row per setting, that is per value of every axis except the seed.

/// The runs of each setting in grid order: `(labels of the axes except seed, runs)`.
pub(crate) fn settings(set: &ResultSet) -> Vec<(Vec<String>, Vec<&RunRecord>)> {
    let records = &set.records;
    let key = |record: &RunRecord| -> Vec<String> {
        set.axes
            .iter()
            .filter(|key| **key != AxisKey::Seed)
            .map(|key| record.label(key).unwrap_or("?").to_string())
            .collect()
    };
    distinct(records.iter().map(key))
        .into_iter()
        .map(|labels| {
            let runs = records.iter().filter(|r| key(r) == labels).collect();
            (labels, runs)
        })
        .collect()
}

pub(crate) fn table(set: &ResultSet) -> String {
    let records = &set.records;
    if records.is_empty() {
        return String::new();
    }
    let shown = |mode| records.iter().any(|r| last_score(r, mode).is_some());
    let (with_precise, with_folded) = (shown(EvalMode::Precise), shown(EvalMode::Folded));
    // The scores made at the last evaluation only sit beside eval mode's at that evaluation.
    let mut columns = vec![Column::Final(EvalMode::Eval)];
    if shown(EvalMode::TrainMode) {
        columns.push(Column::Final(EvalMode::TrainMode));
    }
    if with_precise || with_folded {
        columns.push(Column::Last(EvalMode::Eval));
    }
    columns.extend(
        [
            (with_precise, EvalMode::Precise),
            (with_folded, EvalMode::Folded),
        ]
        .into_iter()
        .filter(|(with, _)| *with)
        .map(|(_, mode)| Column::Last(mode)),
    );
    let mut header: Vec<String> = set
        .axes
        .iter()
        .filter(|key| **key != AxisKey::Seed)
        .map(|key| key.to_string())
        .collect();
    header.extend(["runs", "diverged / impossible"].map(String::from));
    header.extend(columns.iter().map(Column::name));
    header.push("step time (ms)".into());
    let with_norm_time = records.iter().any(|r| norm_ms(r).is_some());
    if with_norm_time {
        header.push("in norm layers (ms)".into());
    }
    let mut text = format!(
        "## Final metrics\n\nOne row per setting (every axis except the seed). Errors are on \
             the validation set in %, each run's {FINAL_METRIC}, given as mean (min..max) over \
             the seeds' finished runs; diverged and impossible runs have no final result and \
             are counted apart. Train-mode error uses batch statistics instead of running ones. \
             Step time is each run's median, averaged over the setting's runs (min..max)."
    );
    if with_precise {
        text.push_str(
            " PreciseBN error uses population statistics re-estimated after training as the \
             equal-weight average over many training batches; it is made at the last evaluation \
             only, so it stands beside eval mode's error at that evaluation.",
        );
    }
    if with_folded {
        text.push_str(
            " Folded error is the model with its batch norms folded into the layers before \
             them, for inference; it too is made at the last evaluation only.",
        );
    }
    if with_norm_time {
        text.push_str(
            " Time in norm layers is the part of each step spent in the norm layers' forward \
             and backward, timed around the layers themselves (each run's median).",
        );
    }
    text.push_str("\n\n");
    text.push_str(&row(&header));
    text.push_str(&row(&vec!["---".to_string(); header.len()]));
    for (labels, runs) in settings(set) {
        let failed = runs.iter().filter(|r| r.status != Status::Finished).count();
        let mut cells = labels;
        cells.push(runs.len().to_string());
        cells.push(failed.to_string());
        for column in &columns {
            let values = runs.iter().filter_map(|r| column.value(r));
            cells.push(fmt_spread(Spread::of(values), 2));
        }
        cells.push(fmt_spread(
            Spread::of(runs.iter().filter_map(|r| step_ms(r))),
            3,
        ));
        if with_norm_time {
            let values = runs.iter().filter_map(|r| norm_ms(r));
            cells.push(fmt_spread(Spread::of(values), 3));
        }
        text.push_str(&row(&cells));
    }
    text.push('\n');
    text
}

/// A column of errors in the table: a run's final error in a mode, or its error in a mode at
/// its last evaluation.
enum Column {
    Final(EvalMode),
    Last(EvalMode),
}

impl Column {
    fn name(&self) -> String {
        let (mode, when) = match self {
            Self::Final(mode) => (mode, ""),
            Self::Last(mode) => (mode, ", last evaluation"),
        };
        let what = match mode {
            EvalMode::Eval => "valid error".to_string(),
            EvalMode::TrainMode => "train-mode error".into(),
            EvalMode::Precise => "PreciseBN error".into(),
            EvalMode::Folded => "folded error".into(),
            EvalMode::Length(length) => format!("error at length {length}"),
        };
        format!("{what}{when} (%)")
    }

    fn value(&self, record: &RunRecord) -> Option<f64> {
        match self {
            Self::Final(mode) => final_score(record, *mode),
            Self::Last(mode) => last_score(record, *mode),
        }
    }
}

fn row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

/// `mean (min..max)`, just the mean for one value, `—` for none.
fn fmt_spread(spread: Option<Spread>, decimals: usize) -> String {
    match spread {
        None => "—".into(),
        Some(s) if s.count == 1 => format!("{:.decimals$}", s.mean),
        Some(s) => format!(
            "{:.decimals$} ({:.decimals$}..{:.decimals$})",
            s.mean, s.min, s.max
        ),
    }
}

fn failures(records: &[RunRecord]) -> String {
    let failed: Vec<&RunRecord> = records
        .iter()
        .filter(|r| r.status != Status::Finished)
        .collect();
    if failed.is_empty() {
        return String::new();
    }
    let mut text = String::from("## Runs without a result\n\n");
    for record in failed {
        let status = match record.status {
            Status::Diverged => "diverged",
            _ => "impossible",
        };
        let reason = record.reason.as_deref().unwrap_or("no reason recorded");
        text.push_str(&format!(
            "- `{}`: {status} after {} steps: {reason}\n",
            record.id, record.steps
        ));
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{
        batching_fixture, fixture, gradient_fixture, kernels_fixture, lr_fixture,
    };
    use crate::plot::draw_all;
    use crate::result_set::series_label;
    use normlab_testkit::scratch;

    const COMMAND: &str = "normlab run experiments/small_batches.toml --jobs 2";

    /// Draws the fixture's plots and report into a fresh folder and returns the report and the
    /// plots.
    fn report(name: &str, set: ResultSet, wall: Option<f64>) -> (String, Vec<PlotFile>) {
        let dir = scratch(name);
        let plots = draw_all(&set, &dir).unwrap();
        write(&set, &dir, &plots, COMMAND, wall).unwrap();
        let text = std::fs::read_to_string(dir.join("README.md")).unwrap();
        (text, plots)
    }

    /// The one list item that contains `needle`.
    fn statement<'a>(text: &'a str, needle: &str) -> &'a str {
        let found: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("- ") && l.contains(needle))
            .collect();
        assert_eq!(found.len(), 1, "one statement with {needle:?} in:\n{text}");
        found[0]
    }

    #[test]
    fn readme_holds_provenance_config_plots_and_table() {
        let (text, plots) = report("report", fixture(), Some(63.2));
        assert!(text.starts_with("# small_batches\n\nBatch norm against group norm"));
        assert!(text.contains(&format!("```sh\n{COMMAND}\n```")));
        assert!(text.contains("Total wall time: 1 min 3 s."));
        assert!(
            text.contains("12 of the 12 runs of the grid have a record: 11 finished, 1 diverged")
        );
        assert!(text.contains("```toml\ndescription = \"Batch norm against group norm"));
        assert_eq!(plots.len(), 5);
        for plot in &plots {
            assert!(text.contains(&format!(
                "![{}]({})\n\n{}",
                plot.title, plot.file, plot.caption
            )));
        }
        // PreciseBN, made at the last evaluation, stands beside eval mode at that evaluation.
        assert!(text.contains(
            "| norm | batch_size | runs | diverged / impossible | valid error (%) | train-mode \
             error (%) | valid error, last evaluation (%) | PreciseBN error, last evaluation (%) \
             | step time (ms) |"
        ));
        assert!(text.contains(
            "| batch | 2 | 2 | 0 | 20.50 (20.00..21.00) | 9.50 (9.00..10.00) | 20.50 \
             (20.00..21.00) | 17.50 (17.00..18.00) | 1.250 (1.250..1.250) |"
        ));
        assert!(
            text.contains("| none | 2 | 2 | 1 | 10.00 | — | 10.00 | — | 1.000 (1.000..1.000) |")
        );
        assert!(text.contains(
            "- `norm=none,batch_size=2,seed=1`: diverged after 10 steps: the loss became \
             non-finite at step 9"
        ));
    }

    #[test]
    fn findings_are_computed_from_the_runs() {
        let (text, _) = report("findings", fixture(), None);
        let batch = statement(&text, "`batch`: mean error");
        assert!(batch.contains("5.50% at batch size 8 and 20.50% at batch size 2: +15.00 points"));
        assert!(batch.ends_with("beyond the spread over seeds."));
        let group = statement(&text, "`group(groups=4)`: mean error");
        assert!(group.contains("+0.00 points") && group.contains("within the spread over seeds"));
        let none = statement(&text, "`none`: mean error");
        assert!(none.contains("-0.50 points") && none.contains("a single run at one end"));
        let compared = statement(&text, "`batch`'s error rises");
        assert!(
            compared.contains("rises 15.00 points more than `group(groups=4)`'s (+15.00 vs +0.00)")
        );
        let gap = statement(&text, "`batch, batch_size=2`: eval mode");
        assert!(gap.contains(
            "20.50%, train mode (batch statistics) 9.50%: train minus eval -11.00 points"
        ));
        assert!(gap.contains(
            "PreciseBN statistics 17.50%: PreciseBN minus eval at the last evaluation -3.00 points"
        ));
        let cost = statement(&text, "`batch`: 1.25 ms per step");
        assert!(cost.contains("vs 1 ms for `none`: normalization takes 20% of the step"));
        assert!(statement(&text, "`group(groups=4)`: 1.5 ms").contains("takes 33% of the step"));
        let drift = statement(&text, "`none` (batch_size=2): the median");
        assert!(drift.contains("moved by 1.000"));
        assert!(statement(&text, "`batch` (batch_size=2): the median").contains("moved by 0.000"));
        assert!(text.contains("the sum of the runs' wall times is 18.0 s"));
    }

    #[test]
    fn settings_that_trained_alike_are_named_as_such() {
        // The fixture's losses depend on the batch size and seed alone: set each norm apart.
        let mut set = fixture();
        for record in &mut set.records {
            let offset = series_label(record).len() as f32 * 1e-3;
            record.losses.iter_mut().for_each(|l| l.loss += offset);
        }
        let (text, _) = report("distinct-training", set.clone(), None);
        assert!(!text.contains("trained alike"), "{text}");
        let batch: Vec<_> = (set.records.iter())
            .filter(|r| series_label(r) == "batch")
            .map(|r| {
                (
                    r.config.train.batch_size,
                    r.config.train.seed,
                    r.losses.clone(),
                )
            })
            .collect();
        for record in set
            .records
            .iter_mut()
            .filter(|r| series_label(r) == "group(groups=4)")
        {
            let train = &record.config.train;
            let same = batch
                .iter()
                .find(|(n, seed, _)| (*n, *seed) == (train.batch_size, train.seed));
            record.losses = same.unwrap().2.clone();
        }
        let (text, _) = report("alike", set.clone(), None);
        let alike = statement(&text, "`batch` and `group(groups=4)` trained alike");
        assert!(
            alike.contains("at every recorded step of all 4 runs they share"),
            "{alike}"
        );
        assert_eq!(text.matches("trained alike").count(), 1, "{text}");

        // One run that trained otherwise breaks the pair.
        let group = set
            .records
            .iter_mut()
            .find(|r| series_label(r) == "group(groups=4)")
            .unwrap();
        group.losses[0].loss += 1e-6;
        let (text, _) = report("one-differs", set, None);
        assert!(!text.contains("trained alike"), "{text}");
    }

    #[test]
    fn the_values_behind_a_statistic_in_the_deepest_layers_are_counted_for_conv_networks() {
        let mut set = fixture();
        let (text, _) = report("no-maps", set.clone(), None);
        assert!(!text.contains("deepest layers"), "an MLP has no maps");
        for record in &mut set.records {
            let norm = record.config.model.norm().clone();
            let resnet = normlab_model::ResnetConfig::default();
            record.config.model = normlab_model::ModelConfig::Resnet(resnet).with_norm(norm);
            record.image_shape = Some([1, 28, 28]);
        }
        let (text, _) = report("maps", set, None);
        let sizes = statement(&text, "Batch norm's statistics in the deepest layers");
        assert!(
            sizes.contains(
                "(7x7 maps) average N x 49 values per channel: 98 at a normalization batch of 2, \
                 392 at a normalization batch of 8."
            ),
            "{sizes}"
        );
    }

    #[test]
    fn the_gradient_verdict_compares_the_largest_gamma_with_the_smallest_in_orders_of_magnitude() {
        let (text, _) = report("gradient", gradient_fixture(), None);
        let verdict = text.lines().find(|l| l.starts_with("**Verdict**")).unwrap();
        assert!(
            verdict.contains(
                "the gradient 1 steps back, relative to the last step's (log10, mean over seeds, \
                 min..max), is `batch(gamma_init=1.0,per_step=8)`'s 10^-5.0 (-6.0..-4.0) against \
                 `batch(gamma_init=0.1,per_step=8)`'s 10^-0.6 (-0.7..-0.5): 4.4 orders of \
                 magnitude apart, 3.1 seed spreads: the vanishing at the larger gamma is shown."
            ),
            "{verdict}"
        );
        let (outcome, _) = headline::summary(&gradient_fixture()).unwrap();
        assert_eq!(outcome, headline::Outcome::Shown);
        // Without a second gamma there is nothing to compare.
        let mut set = gradient_fixture();
        set.records
            .retain(|r| !crate::result_set::norm_label(r).contains("gamma_init=0.1"));
        assert!(headline::gradient_verdict(&set).is_none());
    }

    #[test]
    fn the_batching_verdict_compares_each_norm_with_itself_on_shuffled_batches() {
        let (text, _) = report("batching", batching_fixture(), None);
        let verdict = text.lines().find(|l| l.starts_with("**Verdict**")).unwrap();
        assert!(
            verdict.contains(
                "With batches = same_class_pairs, each norm's error against its own with \
                 shuffled batches: `batch` 20.50% (20.00..21.00) against 10.50% (10.00..11.00) \
                 shuffled: +10.00 points, 14.1 seed spreads (shown); `layer` 11.00% \
                 (10.50..11.50) against 10.50% (10.00..11.00) shuffled: +0.50 points, 0.7 seed \
                 spreads (not shown). The failure of batch norm is shown."
            ),
            "{verdict}"
        );
        let (outcome, _) = headline::summary(&batching_fixture()).unwrap();
        assert_eq!(outcome, headline::Outcome::Shown);
        assert!(headline::batching_verdict(&fixture()).is_none());
    }

    #[test]
    fn timed_norm_layers_are_tabled_and_the_kernel_paths_compared() {
        let (text, plots) = report("kernels", kernels_fixture(), None);
        assert!(
            text.contains("| step time (ms) | in norm layers (ms) |"),
            "{text}"
        );
        assert!(text.contains("| batch | composed | 2 | 0 | 10.00 (10.00..10.00) | 12.050 (12.000..12.100) | 6.050 (6.000..6.100) |"), "{text}");
        let batch = statement(&text, "`batch`: the norm layers take");
        assert_eq!(
            batch,
            "- `batch`: the norm layers take 2.05 ms of the 8.05 ms step (25%) with norm_kernels \
             = fastest, and 6.05 ms of the 12.05 ms step (50%) with norm_kernels = composed: \
             norm_kernels = fastest is 3.0 times faster in the norm layers, beyond the spread \
             over seeds."
        );
        let steps = plots.iter().find(|p| p.file == "step_time.png").unwrap();
        assert!(
            steps
                .caption
                .contains("Dashed: the part of the step spent in the norm layers")
        );
        assert!(
            steps
                .caption
                .ends_with("(median over steps). One panel per norm kernels."),
            "{}",
            steps.caption
        );
    }

    #[test]
    fn headline_measures_the_gap_in_spreads_over_seeds() {
        let (text, _) = report("headline", fixture(), None);
        assert!(text.contains(
            "# small_batches\n\nBatch norm against group norm at small batches.\n\n**Verdict** ("
        ));
        assert!(
            text.contains(
                "). `batch` at batch size 2 ends at 20.50% error (20.00..21.00), against 5.50% \
                 (5.00..6.00) for `batch` normalizing over 8 examples: +15.00 points, 21.2 seed \
                 spreads; against 6.50% (6.00..7.00) for `group(groups=4)` at batch size 2: \
                 +14.00 points, 19.8 seed spreads: the failure is shown.\n"
            ),
            "{text}"
        );

        let lowered = |by: f32| {
            let mut set = fixture();
            let runs = set.records.iter_mut();
            for record in runs.filter(|r| r.id.starts_with("norm=batch,batch_size=2")) {
                for eval in &mut record.evals {
                    let score = eval.scores.get_mut(&EvalMode::Eval).unwrap();
                    score.error -= by;
                }
            }
            set
        };
        // 3 points above itself at batch size 8 (4.2 spreads) but 2 above group norm (2.8).
        let (text, _) = report("weak-headline", lowered(0.12), None);
        assert!(
            text.contains("+2.00 points, 2.8 seed spreads: the failure is weak.\n"),
            "{text}"
        );
        let (text, _) = report("better-headline", lowered(0.16), None);
        assert!(
            text.contains("-2.00 points, -2.8 seed spreads: the failure is not shown.\n"),
            "{text}"
        );
        let (text, _) = report("lr-headline", lr_fixture(), None);
        assert!(
            !text.contains("**Verdict**"),
            "no batch sizes compared, no verdict"
        );
    }

    #[test]
    fn sweeps_state_divergence_and_length_effects() {
        let (text, plots) = report("lr-report", lr_fixture(), None);
        assert!(text.contains(
            "![Final validation error vs learning rate (MLP 8 on digits)](error_vs_lr.png)"
        ));
        assert_eq!(plots.len(), 7);
        let none = statement(&text, "`none` (dropout=0.0): trained");
        assert_eq!(
            none,
            "- `none` (dropout=0.0): trained without diverging up to learning rate 0.1; diverged \
             at 1.0 (2 of 2 runs); lowest mean error 8.00% at learning rate 0.1."
        );
        let layer = statement(&text, "`layer` (dropout=0.5): trained");
        assert!(
            layer.contains("up to learning rate 1.0; no run diverged; lowest mean error 5.00%")
        );
        let length = statement(&text, "`layer` (dropout=0.0, lr=0.01): 1.298 bits");
        assert!(
            length.contains(
                "1.298 bits per character (9.00% error) at the training length 64 and 1.731 \
                 (12.00%) at length 256: +0.433 bits, beyond the spread over seeds."
            ),
            "{length}"
        );
        assert!(
            !text.contains("train-mode error"),
            "no batch norm, no train-mode column"
        );
        let dropout = statement(&text, "`layer` (lr=0.01): mean error");
        assert!(
            dropout.contains("with dropout = 0.0 and") && dropout.contains("with dropout = 0.5"),
            "{dropout}"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(42.04), "42.0 s");
        assert_eq!(fmt_duration(192.4), "3 min 12 s");
        assert_eq!(fmt_duration(3900.0), "1 h 05 min");
    }
}
