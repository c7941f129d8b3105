//! Findings: statements computed from the numbers of the runs, each with its size and whether
//! it stands out from the spread over seeds.

use crate::analysis::{
    LengthScore, Spread, axis_values, describe, describe_axis, distinct, facets, final_error,
    final_precise_error, final_train_mode_error, fmt_number, in_facet, last_eval_error, norm_kind,
    norm_label, norm_labels, norm_ms, other_axes, percentile_runs, scores_by_length, step_ms,
    unit_zero, varies,
};
use crate::config::Experiment;
use crate::report::settings;
use crate::results::{RunRecord, Status};

pub(crate) fn findings(experiment: &Experiment, records: &[RunRecord]) -> String {
    let statements: Vec<String> = [
        batch_size_findings(experiment, records),
        train_eval_findings(experiment, records),
        other_axis_findings(experiment, records),
        divergence_findings(experiment, records, "lr"),
        divergence_findings(experiment, records, "init_scale"),
        length_findings(experiment, records),
        gradient_flow_findings(experiment, records),
        percentile_findings(experiment, records),
        step_time_findings(experiment, records),
        norm_time_findings(experiment, records),
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
    in_facet(records, axes, facet).filter(move |r| norm_label(r) == norm)
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

/// For every axis the other findings do not cover (how batches are drawn, weight
/// standardization, ...): each norm's mean error at each value against the axis's first value.
fn other_axis_findings(experiment: &Experiment, records: &[RunRecord]) -> Vec<String> {
    let covered = ["norm", "seed", "batch_size", "lr", "init_scale"];
    let mut statements = Vec::new();
    for axis in other_axes(experiment, &covered) {
        let values = axis_values(experiment, &axis);
        let Some((first, rest)) = values.split_first() else {
            continue;
        };
        let facet_axes = other_axes(experiment, &["norm", "seed", axis.as_str()]);
        for facet in facets(records, &facet_axes) {
            for norm in norm_labels(experiment) {
                let at = |value: &String| {
                    Spread::of(
                        runs_of(records, &facet_axes, &facet, &norm)
                            .filter(|r| r.axis(&axis) == Some(value.as_str()))
                            .filter_map(final_error),
                    )
                };
                let Some(base) = at(first) else { continue };
                for value in rest {
                    let Some(other) = at(value) else { continue };
                    statements.push(format!(
                        "`{norm}`{}: mean error {:.2}% with {axis} = {first} and {:.2}% with \
                         {axis} = {value}: {:+.2} points{}.",
                        where_(&facet),
                        base.mean,
                        other.mean,
                        other.mean - base.mean,
                        verdict(&base, &other)
                    ));
                }
            }
        }
    }
    statements
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
            let mut statement = format!(
                "`{name}`: eval mode (running statistics) {:.2}%, train mode (batch statistics) \
                 {:.2}%: train minus eval {:+.2} points{}",
                eval.mean,
                train.mean,
                gap.mean,
                gap_spread(&gap)
            );
            let precise: Vec<(f64, f64)> = runs
                .iter()
                .filter_map(|r| last_eval_error(r).zip(final_precise_error(r)))
                .collect();
            if let (Some(value), Some(gap)) = (
                Spread::of(precise.iter().map(|p| p.1)),
                Spread::of(precise.iter().map(|p| p.1 - p.0)),
            ) {
                statement.push_str(&format!(
                    "; PreciseBN statistics {:.2}%: PreciseBN minus eval at the last evaluation \
                     {:+.2} points{}",
                    value.mean,
                    gap.mean,
                    gap_spread(&gap)
                ));
            }
            Some(format!("{statement}."))
        })
        .collect()
}

/// How the gap between two measures of the same runs varies over seeds.
fn gap_spread(gap: &Spread) -> String {
    match gap.count {
        1 => " (a single run: no spread over seeds)".to_string(),
        _ if gap.min <= 0.0 && 0.0 <= gap.max => format!(
            " ({:+.2}..{:+.2} over seeds: the gap is within the spread over seeds)",
            gap.min, gap.max
        ),
        _ => format!(" ({:+.2}..{:+.2} over seeds)", gap.min, gap.max),
    }
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

/// How much each setting's gradient shrinks from the last step back to the middle one, at
/// initialization and after training: the slope of the gradient-flow plot in one number.
fn gradient_flow_findings(experiment: &Experiment, records: &[RunRecord]) -> Vec<String> {
    let shrink = |runs: &[&RunRecord], trained: bool| -> Option<(Spread, usize, usize)> {
        let flows = runs
            .iter()
            .flat_map(|r| &r.gradient_flow)
            .filter(|flow| (flow.step > 0) == trained && flow.norms.len() >= 2);
        let mut steps = (0, 0);
        let factors = flows.filter_map(|flow| {
            let (last, middle) = (flow.norms.len() - 1, flow.norms.len() / 2 - 1);
            steps = (middle + 1, last + 1);
            let factor = f64::from(flow.norms[last]) / f64::from(flow.norms[middle]);
            factor.is_finite().then_some(factor)
        });
        let spread = Spread::of(factors.collect::<Vec<_>>())?;
        Some((spread, steps.0, steps.1))
    };
    settings(experiment, records)
        .into_iter()
        .filter_map(|(_, runs)| {
            let (initial, middle, last) = shrink(&runs, false)?;
            let mut statement = format!(
                "`{}`: the gradient with respect to h_t is {} times larger at step {last} than \
                 at step {middle} at initialization (mean over seeds, {}..{}; above 1 it \
                 shrinks going back in time)",
                norm_label(runs[0]),
                fmt_number(initial.mean),
                fmt_number(initial.min),
                fmt_number(initial.max),
            );
            if let Some((trained, ..)) = shrink(&runs, true) {
                statement.push_str(&format!(
                    ", {} times after training ({}..{})",
                    fmt_number(trained.mean),
                    fmt_number(trained.min),
                    fmt_number(trained.max),
                ));
            }
            Some(format!("{statement}."))
        })
        .collect()
}

/// Each norm's bits per character and error at the longest evaluation length vs at the
/// training length; the verdict is on the bits, the language model's own measure.
fn length_findings(experiment: &Experiment, records: &[RunRecord]) -> Vec<String> {
    let facet_axes = other_axes(experiment, &["norm", "seed"]);
    let mut statements = Vec::new();
    for facet in facets(records, &facet_axes) {
        for norm in norm_labels(experiment) {
            let scores: Vec<Vec<LengthScore>> = runs_of(records, &facet_axes, &facet, &norm)
                .map(scores_by_length)
                .filter(|scores| !scores.is_empty())
                .collect();
            let Some(first) = runs_of(records, &facet_axes, &facet, &norm).next() else {
                continue;
            };
            let trained = first.config.data.seq_len;
            let longest = scores.iter().flatten().map(|s| s.length).max();
            let Some(longest) = longest.filter(|&l| l != trained) else {
                continue;
            };
            let at = |length: usize, score: fn(&LengthScore) -> f64| {
                Spread::of(
                    scores
                        .iter()
                        .flatten()
                        .filter(|s| s.length == length)
                        .map(score),
                )
            };
            let (Some(short_bits), Some(long_bits), Some(short_error), Some(long_error)) = (
                at(trained, |s| s.bits),
                at(longest, |s| s.bits),
                at(trained, |s| s.error),
                at(longest, |s| s.error),
            ) else {
                continue;
            };
            statements.push(format!(
                "`{norm}`{}: {:.3} bits per character ({:.2}% error) at the training length \
                 {trained} and {:.3} ({:.2}%) at length {longest}: {:+.3} bits{}.",
                where_(&facet),
                short_bits.mean,
                short_error.mean,
                long_bits.mean,
                long_error.mean,
                long_bits.mean - short_bits.mean,
                verdict(&short_bits, &long_bits)
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

/// For runs whose norm layers were timed: the part of the step they take, and with both kernel
/// paths, how much faster the fused kernels make them.
fn norm_time_findings(experiment: &Experiment, records: &[RunRecord]) -> Vec<String> {
    const KERNELS: &str = "norm_kernels";
    let facet_axes = other_axes(experiment, &["norm", "seed", KERNELS]);
    let paths = match varies(experiment, KERNELS) {
        true => sorted_values(experiment, KERNELS),
        false => vec![String::new()],
    };
    let mut statements = Vec::new();
    for facet in facets(records, &facet_axes) {
        for norm in norm_labels(experiment) {
            let timed: Vec<(String, Spread, Spread)> = paths
                .iter()
                .filter_map(|path| {
                    let runs: Vec<&RunRecord> = runs_of(records, &facet_axes, &facet, &norm)
                        .filter(|r| path.is_empty() || r.axis(KERNELS) == Some(path.as_str()))
                        .collect();
                    let in_norms = Spread::of(runs.iter().filter_map(|r| norm_ms(r)))?;
                    let step = Spread::of(runs.iter().filter_map(|r| step_ms(r)))?;
                    Some((path.clone(), in_norms, step))
                })
                .collect();
            if timed.is_empty() || norm == "none" {
                continue;
            }
            let parts: Vec<String> = timed
                .iter()
                .map(|(path, in_norms, step)| {
                    let with = match path.is_empty() {
                        true => String::new(),
                        false => format!(" with {KERNELS} = {path}"),
                    };
                    format!(
                        "{} ms of the {} ms step ({:.0}%){with}",
                        fmt_number(in_norms.mean),
                        fmt_number(step.mean),
                        in_norms.mean / step.mean * 100.0
                    )
                })
                .collect();
            let speedup = match timed.as_slice() {
                [(a, a_ms, _), (b, b_ms, _)] => {
                    let (fast, slow) = match a_ms.mean <= b_ms.mean {
                        true => ((a, a_ms), (b, b_ms)),
                        false => ((b, b_ms), (a, a_ms)),
                    };
                    let ratio = slow.1.mean / fast.1.mean;
                    match ratio < 1.1 {
                        // EvoNorm and online norm have no fused kernel: one computation twice.
                        true => format!(
                            ": the two take the same time to within {:.0}%{}",
                            (ratio - 1.0) * 100.0,
                            verdict(fast.1, slow.1)
                        ),
                        false => format!(
                            ": {KERNELS} = {} is {ratio:.1} times faster in the norm layers{}",
                            fast.0,
                            verdict(fast.1, slow.1)
                        ),
                    }
                }
                _ => String::new(),
            };
            statements.push(format!(
                "`{norm}`{}: the norm layers take {}{speedup}.",
                where_(&facet),
                parts.join(", and ")
            ));
        }
    }
    statements
}
