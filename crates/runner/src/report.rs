//! The `README.md` report of an experiment's results: how they were produced, the config, the
//! plots, a table of final metrics and statements computed from those metrics.
//!
//! Every number is computed here from the run records, with the same helpers the plots use;
//! nothing is hand-written. Where an expected effect is absent or within the spread over seeds,
//! the statement says so.

use std::path::Path;

use crate::config::Experiment;
use crate::plot::{
    PlotFile, Spread, axis_values, describe, describe_axis, distinct, errors_by_length,
    final_error, final_train_mode_error, fmt_number, norm_kind, norm_label, norm_labels,
    other_axes, percentile_runs, step_ms, unit_zero, varies,
};
use crate::results::{RunRecord, Status, write_atomically};

/// Writes `out_dir/README.md` for `records` of `experiment`, linking `plots` (drawn into the
/// same folder). `command` is the command line that produced the results; without
/// `total_wall_seconds` the report gives the sum of the runs' own wall times instead.
pub fn write(
    experiment: &Experiment,
    records: &[RunRecord],
    out_dir: &Path,
    plots: &[PlotFile],
    command: &str,
    total_wall_seconds: Option<f64>,
) -> Result<(), String> {
    let text = [
        header(experiment),
        provenance(experiment, records, command, total_wall_seconds),
        config(experiment),
        plot_section(plots),
        table(experiment, records),
        failures(records),
        findings(experiment, records),
    ]
    .concat();
    let path = out_dir.join("README.md");
    write_atomically(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

fn header(experiment: &Experiment) -> String {
    let description = experiment.description.trim();
    match description.is_empty() {
        true => format!("# {}\n\n", experiment.name),
        false => format!("# {}\n\n{description}\n\n", experiment.name),
    }
}

fn provenance(
    experiment: &Experiment,
    records: &[RunRecord],
    command: &str,
    total_wall_seconds: Option<f64>,
) -> String {
    let wall = match total_wall_seconds {
        Some(seconds) => format!("Total wall time: {}.", fmt_duration(seconds)),
        None => format!(
            "Total wall time: not recorded (the runs were trained over several sessions); the \
             sum of the runs' wall times is {}.",
            fmt_duration(records.iter().map(|r| r.wall_seconds).sum())
        ),
    };
    let count = |status| records.iter().filter(|r| r.status == status).count();
    format!(
        "## How these results were produced\n\n```sh\n{}\n```\n\n{wall}\n\n{} of the {} runs of \
         the grid have a record: {} finished, {} diverged, {} impossible.\n\n",
        command.trim(),
        records.len(),
        experiment.points.len(),
        count(Status::Finished),
        count(Status::Diverged),
        count(Status::Impossible),
    )
}

/// `42.0 s`, `3 min 12 s`, `1 h 05 min`.
fn fmt_duration(seconds: f64) -> String {
    let whole = seconds.round() as u64;
    match seconds {
        s if s < 60.0 => format!("{s:.1} s"),
        s if s < 3600.0 => format!("{} min {} s", whole / 60, whole % 60),
        _ => format!("{} h {:02} min", whole / 3600, whole % 3600 / 60),
    }
}

fn config(experiment: &Experiment) -> String {
    format!("## Config\n\n```toml\n{}\n```\n\n", experiment.text.trim())
}

fn plot_section(plots: &[PlotFile]) -> String {
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
fn settings<'a>(
    experiment: &Experiment,
    records: &'a [RunRecord],
) -> Vec<(Vec<String>, Vec<&'a RunRecord>)> {
    let key = |record: &RunRecord| -> Vec<String> {
        experiment
            .axes
            .iter()
            .filter(|axis| axis.name != "seed")
            .map(|axis| record.axis(&axis.name).unwrap_or("?").to_string())
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

fn table(experiment: &Experiment, records: &[RunRecord]) -> String {
    if records.is_empty() {
        return String::new();
    }
    let with_train_mode = records.iter().any(|r| final_train_mode_error(r).is_some());
    let mut header: Vec<String> = experiment
        .axes
        .iter()
        .filter(|axis| axis.name != "seed")
        .map(|axis| axis.name.clone())
        .collect();
    header.extend(["runs", "diverged / impossible", "valid error (%)"].map(String::from));
    if with_train_mode {
        header.push("train-mode error (%)".into());
    }
    header.push("step time (ms)".into());
    let mut text = String::from(
        "## Final metrics\n\nOne row per setting (every axis except the seed). Errors are on the \
         validation set in %, given as mean (min..max) over the seeds' finished runs; diverged \
         and impossible runs have no final result and are counted apart. Train-mode error uses \
         batch statistics instead of running ones. Step time is each run's median, averaged \
         over the setting's runs (min..max).\n\n",
    );
    text.push_str(&row(&header));
    text.push_str(&row(&vec!["---".to_string(); header.len()]));
    for (labels, runs) in settings(experiment, records) {
        let failed = runs.iter().filter(|r| r.status != Status::Finished).count();
        let mut cells = labels;
        cells.push(runs.len().to_string());
        cells.push(failed.to_string());
        cells.push(fmt_spread(
            Spread::of(runs.iter().filter_map(|r| final_error(r))),
            2,
        ));
        if with_train_mode {
            let train_mode = runs.iter().filter_map(|r| final_train_mode_error(r));
            cells.push(fmt_spread(Spread::of(train_mode), 2));
        }
        cells.push(fmt_spread(
            Spread::of(runs.iter().filter_map(|r| step_ms(r))),
            3,
        ));
        text.push_str(&row(&cells));
    }
    text.push('\n');
    text
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

// ---------------------------------------------------------------------------------------------
// Findings: statements computed from the numbers.

fn findings(experiment: &Experiment, records: &[RunRecord]) -> String {
    let statements: Vec<String> = [
        batch_size_findings(experiment, records),
        train_eval_findings(experiment, records),
        divergence_findings(experiment, records, "lr"),
        divergence_findings(experiment, records, "init_scale"),
        length_findings(experiment, records),
        percentile_findings(experiment, records),
        step_time_findings(experiment, records),
    ]
    .concat();
    if statements.is_empty() {
        return String::new();
    }
    let mut text = String::from(
        "## Findings\n\nComputed from the final results above. \"Within the spread over seeds\" \
         means that the min..max ranges over seeds of the two numbers compared overlap: these \
         seeds do not resolve the difference.\n\n",
    );
    for statement in statements {
        text.push_str(&format!("- {statement}\n"));
    }
    text
}

/// The runs of `norm` whose values of `axes` are `facet`.
fn runs_of<'a>(
    records: &'a [RunRecord],
    axes: &'a [String],
    facet: &'a str,
    norm: &'a str,
) -> impl Iterator<Item = &'a RunRecord> + 'a {
    records
        .iter()
        .filter(move |r| norm_label(r) == norm && describe(r, axes) == facet)
}

/// The facets (values of `axes`) in grid order.
fn facets(records: &[RunRecord], axes: &[String]) -> Vec<String> {
    distinct(records.iter().map(|r| describe(r, axes)))
}

/// ` (facet)`, or nothing for the only facet.
fn where_(facet: &str) -> String {
    match facet.is_empty() {
        true => String::new(),
        false => format!(" ({facet})"),
    }
}

/// Whether the difference between `a` and `b` stands out from the spread over seeds.
fn verdict(a: &Spread, b: &Spread) -> &'static str {
    if a.count < 2 || b.count < 2 {
        " (a single run at one end: no spread over seeds to compare with)"
    } else if a.overlaps(b) {
        ", within the spread over seeds"
    } else {
        ", beyond the spread over seeds"
    }
}

/// The values of a numeric axis from smallest to largest (grid order if not all numbers).
fn sorted_values(experiment: &Experiment, name: &str) -> Vec<String> {
    let mut values = axis_values(experiment, name);
    if values.iter().all(|v| v.parse::<f64>().is_ok()) {
        values.sort_by(|a, b| {
            a.parse::<f64>()
                .unwrap_or(0.0)
                .total_cmp(&b.parse().unwrap_or(0.0))
        });
    }
    values
}

/// How each norm's mean error changes from the largest to the smallest batch size, and batch
/// norm's change beside group and layer norm's.
fn batch_size_findings(experiment: &Experiment, records: &[RunRecord]) -> Vec<String> {
    if !varies(experiment, "batch_size") {
        return Vec::new();
    }
    let sizes = sorted_values(experiment, "batch_size");
    let (small, large) = (&sizes[0], &sizes[sizes.len() - 1]);
    let facet_axes = other_axes(experiment, &["norm", "seed", "batch_size"]);
    let mut statements = Vec::new();
    for facet in facets(records, &facet_axes) {
        let mut rises: Vec<(String, f64)> = Vec::new();
        for norm in norm_labels(experiment) {
            let runs = || runs_of(records, &facet_axes, &facet, &norm);
            let at = |size: &String| -> Vec<&RunRecord> {
                runs()
                    .filter(|r| r.axis("batch_size") == Some(size.as_str()))
                    .collect()
            };
            let error =
                |runs: &[&RunRecord]| Spread::of(runs.iter().filter_map(|r| final_error(r)));
            let (at_large, at_small) = (at(large), at(small));
            match (error(&at_large), error(&at_small)) {
                (Some(l), Some(s)) => {
                    let rise = s.mean - l.mean;
                    rises.push((norm.clone(), rise));
                    statements.push(format!(
                        "`{norm}`{}: mean error {:.2}% at batch size {large} and {:.2}% at batch \
                         size {small}: {rise:+.2} points from the largest to the smallest batch{}.",
                        where_(&facet),
                        l.mean,
                        s.mean,
                        verdict(&l, &s)
                    ));
                }
                (Some(l), None) if !at_small.is_empty() => statements.push(format!(
                    "`{norm}`{}: mean error {:.2}% at batch size {large}; no result at batch size \
                     {small}, where all {} runs diverged or could not train.",
                    where_(&facet),
                    l.mean,
                    at_small.len()
                )),
                _ => {}
            }
        }
        statements.extend(rise_comparisons(&rises, &facet, large, small));
    }
    statements
}

/// Batch norm's rise in error compared with each group and layer norm's.
fn rise_comparisons(rises: &[(String, f64)], facet: &str, large: &str, small: &str) -> Vec<String> {
    let of_kind = |kinds: &'static [&'static str]| {
        rises
            .iter()
            .filter(move |(norm, _)| kinds.contains(&norm_kind(norm)))
    };
    of_kind(&["batch"])
        .flat_map(|(batch, batch_rise)| {
            of_kind(&["group", "layer"]).map(move |(other, other_rise)| {
                let difference = batch_rise - other_rise;
                let (amount, direction) = (
                    difference.abs(),
                    if difference > 0.0 { "more" } else { "less" },
                );
                format!(
                    "From batch size {large} to {small}{}, `{batch}`'s error rises {amount:.2} \
                     points {direction} than `{other}`'s ({batch_rise:+.2} vs {other_rise:+.2}).",
                    where_(facet)
                )
            })
        })
        .collect()
}

/// Batch norm's eval-mode (running statistics) vs train-mode (batch statistics) error at each
/// setting, with the spread of the per-run gap.
fn train_eval_findings(experiment: &Experiment, records: &[RunRecord]) -> Vec<String> {
    let axes = other_axes(experiment, &["norm", "seed"]);
    settings(experiment, records)
        .into_iter()
        .filter_map(|(_, runs)| {
            let pairs: Vec<(f64, f64)> = runs
                .iter()
                .filter_map(|r| final_error(r).zip(final_train_mode_error(r)))
                .collect();
            let eval = Spread::of(pairs.iter().map(|p| p.0))?;
            let train = Spread::of(pairs.iter().map(|p| p.1))?;
            let gap = Spread::of(pairs.iter().map(|p| p.1 - p.0))?;
            let name = [norm_label(runs[0]), describe(runs[0], &axes)]
                .into_iter()
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            let spread = match gap.count {
                1 => " (a single run: no spread over seeds)".to_string(),
                _ if gap.min <= 0.0 && 0.0 <= gap.max => format!(
                    " ({:+.2}..{:+.2} over seeds: the gap is within the spread over seeds)",
                    gap.min, gap.max
                ),
                _ => format!(" ({:+.2}..{:+.2} over seeds)", gap.min, gap.max),
            };
            Some(format!(
                "`{name}`: eval mode (running statistics) {:.2}%, train mode (batch statistics) \
                 {:.2}%: train minus eval {:+.2} points{spread}.",
                eval.mean, train.mean, gap.mean
            ))
        })
        .collect()
}

/// For an axis such as the learning rate: the largest value each norm trained at without any
/// run diverging, where it diverged, and its best value.
fn divergence_findings(experiment: &Experiment, records: &[RunRecord], axis: &str) -> Vec<String> {
    if !varies(experiment, axis) {
        return Vec::new();
    }
    let values = sorted_values(experiment, axis);
    let description = describe_axis(axis);
    let facet_axes = other_axes(experiment, &["norm", "seed", axis]);
    let mut statements = Vec::new();
    for facet in facets(records, &facet_axes) {
        for norm in norm_labels(experiment) {
            let at = |value: &String| -> Vec<&RunRecord> {
                runs_of(records, &facet_axes, &facet, &norm)
                    .filter(|r| r.axis(axis) == Some(value.as_str()))
                    .collect()
            };
            let tried: Vec<(&String, Vec<&RunRecord>)> = values
                .iter()
                .map(|value| (value, at(value)))
                .filter(|(_, runs)| !runs.is_empty())
                .collect();
            if tried.is_empty() {
                continue;
            }
            let diverged_count =
                |runs: &[&RunRecord]| runs.iter().filter(|r| r.status == Status::Diverged).count();
            let stable = tried
                .iter()
                .rev()
                .find(|(_, runs)| diverged_count(runs) == 0);
            let diverged: Vec<String> = tried
                .iter()
                .filter(|(_, runs)| diverged_count(runs) > 0)
                .map(|(value, runs)| {
                    format!("{value} ({} of {} runs)", diverged_count(runs), runs.len())
                })
                .collect();
            let mut statement = match stable {
                Some((value, _)) => format!(
                    "`{norm}`{}: trained without diverging up to {description} {value}",
                    where_(&facet)
                ),
                None => format!(
                    "`{norm}`{}: diverged at every {description} tried",
                    where_(&facet)
                ),
            };
            statement.push_str(&match diverged.is_empty() {
                true => "; no run diverged".to_string(),
                false => format!("; diverged at {}", diverged.join(", ")),
            });
            let best = tried
                .iter()
                .filter_map(|(value, runs)| {
                    Some((
                        value,
                        Spread::of(runs.iter().filter_map(|r| final_error(r)))?.mean,
                    ))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((value, error)) = best {
                statement.push_str(&format!(
                    "; lowest mean error {error:.2}% at {description} {value}"
                ));
            }
            statements.push(format!("{statement}."));
        }
    }
    statements
}

/// Each norm's error at the longest evaluation length vs at the training length.
fn length_findings(experiment: &Experiment, records: &[RunRecord]) -> Vec<String> {
    let facet_axes = other_axes(experiment, &["norm", "seed"]);
    let mut statements = Vec::new();
    for facet in facets(records, &facet_axes) {
        for norm in norm_labels(experiment) {
            let runs: Vec<&RunRecord> = runs_of(records, &facet_axes, &facet, &norm)
                .filter(|r| !errors_by_length(r).is_empty())
                .collect();
            let Some(first) = runs.first() else { continue };
            let trained = first.config.data.seq_len;
            let longest = runs
                .iter()
                .flat_map(|r| errors_by_length(r))
                .map(|(length, _)| length)
                .max()
                .unwrap_or(trained);
            let at = |length: usize| {
                Spread::of(
                    runs.iter()
                        .flat_map(|r| errors_by_length(r))
                        .filter(|(l, _)| *l == length)
                        .map(|(_, e)| e),
                )
            };
            let (Some(short), Some(long)) = (at(trained), at(longest)) else {
                continue;
            };
            if longest == trained {
                continue;
            }
            statements.push(format!(
                "`{norm}`{}: mean error {:.2}% at the training length {trained} and {:.2}% at \
                 length {longest}: {:+.2} points{}.",
                where_(&facet),
                short.mean,
                long.mean,
                long.mean - short.mean,
                verdict(&short, &long)
            ));
        }
    }
    statements
}

/// How far the median of the probed unit moved over training in each run of the percentile
/// plot: the internal covariate shift it shows.
fn percentile_findings(experiment: &Experiment, records: &[RunRecord]) -> Vec<String> {
    let axes = other_axes(experiment, &["norm", "seed"]);
    percentile_runs(experiment, records)
        .into_iter()
        .filter_map(|record| {
            let sites = distinct(
                record
                    .probes
                    .iter()
                    .flat_map(|p| p.sites.iter().map(|s| s.site.as_str())),
            );
            let (site, first, last) = sites
                .into_iter()
                .filter_map(|site| {
                    let track = unit_zero(record, Some(site));
                    Some((site, *track.first()?, *track.last()?))
                })
                .max_by(|a, b| drift(a.1, a.2).total_cmp(&drift(b.1, b.2)))?;
            let width = |p: [f32; 3]| p[2] - p[0];
            Some(format!(
                "`{}`{}: the median input of unit 0 moved by {:.3} over training (largest at \
                 {site}: {:.3} at step {} to {:.3} at step {}; the 15th–85th percentile band went \
                 from {:.3} to {:.3} wide).",
                norm_label(record),
                where_(&describe(record, &axes)),
                drift(first, last),
                first.1[1],
                first.0,
                last.1[1],
                last.0,
                width(first.1),
                width(last.1)
            ))
        })
        .collect()
}

/// How far the median moved between two probes.
fn drift(first: (usize, [f32; 3]), last: (usize, [f32; 3])) -> f32 {
    (last.1[1] - first.1[1]).abs()
}

/// Each norm's step time relative to no normalization at the same setting: the share of the
/// step that normalization costs, `1 - t_none / t_norm`.
fn step_time_findings(experiment: &Experiment, records: &[RunRecord]) -> Vec<String> {
    let norms = norm_labels(experiment);
    if norms.len() < 2 || !norms.iter().any(|n| n == "none") {
        return Vec::new();
    }
    let facet_axes = other_axes(experiment, &["norm", "seed"]);
    let facets = facets(records, &facet_axes);
    let time = |facet: &str, norm: &str| {
        Spread::of(runs_of(records, &facet_axes, facet, norm).filter_map(step_ms))
    };
    norms
        .iter()
        .filter(|norm| *norm != "none")
        .filter_map(|norm| {
            let compared: Vec<(Spread, Spread)> = facets
                .iter()
                .filter_map(|facet| time(facet, "none").zip(time(facet, norm)))
                .collect();
            let share = Spread::of(
                compared
                    .iter()
                    .map(|(none, own)| 1.0 - none.mean / own.mean),
            )?;
            let own = Spread::of(compared.iter().map(|(_, own)| own.mean))?.mean;
            let none = Spread::of(compared.iter().map(|(none, _)| none.mean))?.mean;
            let overlapping = compared
                .iter()
                .filter(|(none, own)| none.overlaps(own))
                .count();
            let settings = match compared.len() {
                1 => String::new(),
                n => format!(
                    " (mean over {n} settings; {:.0}%..{:.0}%)",
                    share.min * 100.0,
                    share.max * 100.0
                ),
            };
            let cost = match share.mean > 0.0 {
                true => format!(
                    "normalization takes {:.0}% of the step{settings}",
                    share.mean * 100.0
                ),
                false => format!("no measurable cost of normalization{settings}"),
            };
            let noise = match overlapping {
                0 => String::new(),
                k => format!(
                    "; in {k} of {} settings the step times of the two overlap across runs, \
                     within timing noise",
                    compared.len()
                ),
            };
            Some(format!(
                "`{norm}`: {} ms per step vs {} ms for `none`: {cost}{noise}.",
                fmt_number(own),
                fmt_number(none)
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::draw_all;
    use crate::plot::tests::{fixture, lr_fixture, scratch};

    const COMMAND: &str = "normlab run experiments/small_batches.toml --jobs 2";

    /// Draws the fixture's plots and report into a fresh folder and returns the report and the
    /// plots.
    fn report(
        name: &str,
        (experiment, records): (Experiment, Vec<RunRecord>),
        wall: Option<f64>,
    ) -> (String, Vec<PlotFile>) {
        let dir = scratch(name);
        let plots = draw_all(&experiment, &records, &dir).unwrap();
        write(&experiment, &records, &dir, &plots, COMMAND, wall).unwrap();
        let text = std::fs::read_to_string(dir.join("README.md")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
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
        assert!(text.contains(
            "| norm | batch_size | runs | diverged / impossible | valid error (%) | train-mode \
             error (%) | step time (ms) |"
        ));
        assert!(text.contains("| batch | 2 | 2 | 0 | 20.50 (20.00..21.00) | 9.50 (9.00..10.00) | 1.250 (1.250..1.250) |"));
        assert!(text.contains("| none | 2 | 2 | 1 | 10.00 | — | 1.000 (1.000..1.000) |"));
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
        let cost = statement(&text, "`batch`: 1.25 ms per step");
        assert!(cost.contains("vs 1 ms for `none`: normalization takes 20% of the step"));
        assert!(statement(&text, "`group(groups=4)`: 1.5 ms").contains("takes 33% of the step"));
        let drift = statement(&text, "`none` (batch_size=2): the median");
        assert!(drift.contains("moved by 1.000"));
        assert!(statement(&text, "`batch` (batch_size=2): the median").contains("moved by 0.000"));
        assert!(text.contains("the sum of the runs' wall times is 18.0 s"));
    }

    #[test]
    fn sweeps_state_divergence_and_length_effects() {
        let (text, plots) = report("lr-report", lr_fixture(), None);
        assert!(text.contains("![Final validation error vs learning rate](error_vs_lr.png)"));
        assert_eq!(plots.len(), 6);
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
        let length = statement(&text, "`layer` (dropout=0.0, lr=0.01): mean error");
        assert!(length.contains(
            "9.00% at the training length 64 and 12.00% at length 256: +3.00 points, beyond the \
             spread over seeds."
        ));
        assert!(
            !text.contains("train-mode error"),
            "no batch norm, no train-mode column"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(42.04), "42.0 s");
        assert_eq!(fmt_duration(192.4), "3 min 12 s");
        assert_eq!(fmt_duration(3900.0), "1 h 05 min");
    }
}
