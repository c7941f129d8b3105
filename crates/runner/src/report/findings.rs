//! Findings: statements computed from the numbers of the runs, each with its size and whether
//! it stands out from the spread over seeds.

use crate::analysis::{
    LengthScore, Spread, describe, facets, final_error, final_score, fmt_number, in_facet,
    last_score, norm_ms, percentile_runs, scores_by_length, step_ms, unit_zero,
};
use crate::axes::AxisKey;
use crate::report::headline::normalization_batch;
use crate::report::settings;
use crate::result_set::{ResultSet, distinct, series_label};
use crate::results::{EvalMode, GradientFlow, RunRecord, Status};

pub(crate) fn findings(set: &ResultSet) -> String {
    let statements = statements(set);
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

/// Every statement the findings make, in order.
pub(crate) fn statements(set: &ResultSet) -> Vec<String> {
    [
        batch_size_findings(set),
        statistic_size_findings(set),
        train_eval_findings(set),
        identical_training_findings(set),
        other_axis_findings(set),
        divergence_findings(set, &AxisKey::Lr),
        divergence_findings(set, &AxisKey::InitScale),
        length_findings(set),
        gradient_flow_findings(set),
        percentile_findings(set),
        step_time_findings(set),
        norm_time_findings(set),
        plateau_findings(set),
    ]
    .concat()
}

/// How many values batch norm's statistics average in the deepest layers of a conv network, at
/// each normalization batch of the set: `N * height * width` per channel.
fn statistic_size_findings(set: &ResultSet) -> Vec<String> {
    let sizes = set.records.iter().filter_map(|r| {
        let examples = normalization_batch(r)?;
        let [height, width] = r.config.model.deepest_map(r.image_shape?)?;
        Some((examples, [height, width]))
    });
    let mut sizes: Vec<(usize, [usize; 2])> = distinct(sizes);
    sizes.sort_unstable();
    let Some(&(_, [height, width])) = sizes.first() else {
        return Vec::new();
    };
    if sizes.iter().any(|(_, map)| *map != [height, width]) {
        return Vec::new();
    }
    let each: Vec<String> = sizes
        .iter()
        .map(|(n, _)| format!("{} at a normalization batch of {n}", n * height * width))
        .collect();
    vec![format!(
        "Batch norm's statistics in the deepest layers ({height}x{width} maps) average N x {} \
         values per channel: {}. The pixels of one image are correlated, so such a statistic \
         is nearer an average over N images than over N x {} independent values.",
        height * width,
        each.join(", "),
        height * width,
    )]
}

/// Pairs of series that trained alike: the same training loss, to the bit, at every recorded
/// step of every run they share (the same value on every other axis, the seed included). Inside
/// a recurrence computed step by step, batch norm with and without `per_step` is such a pair:
/// both normalize step `t` by step `t`'s batch in training and differ only in the population
/// statistics that evaluation uses, which the scores alone would not tell a reader.
fn identical_training_findings(set: &ResultSet) -> Vec<String> {
    let others = |r: &RunRecord| -> Vec<String> {
        (r.axes.iter())
            .filter(|s| s.key != AxisKey::Norm)
            .map(|s| s.label.clone())
            .collect()
    };
    let trained: Vec<(String, Vec<String>, &RunRecord)> = (set.records.iter())
        .filter(|r| !r.losses.is_empty())
        .map(|r| (series_label(r), others(r), r))
        .collect();
    let names = series(set);
    let mut statements = Vec::new();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            let pairs: Vec<bool> = (trained.iter().filter(|(series, _, _)| series == a))
                .flat_map(|(_, point, run)| {
                    (trained.iter())
                        .filter(move |(series, other, _)| series == b && other == point)
                        .map(move |(_, _, other)| other.losses == run.losses)
                })
                .collect();
            if !pairs.is_empty() && pairs.iter().all(|&same| same) {
                statements.push(format!(
                    "`{a}` and `{b}` trained alike: the same training loss, to the bit, at every \
                     recorded step of all {} runs they share (same seed and settings), so what \
                     tells them apart acts only when the model is evaluated.",
                    pairs.len()
                ));
            }
        }
    }
    statements
}

/// The runs of series `norm` whose values of `axes` are `facet`.
fn runs_of<'a>(
    records: &'a [RunRecord],
    axes: &'a [AxisKey],
    facet: &'a str,
    norm: &'a str,
) -> impl Iterator<Item = &'a RunRecord> + 'a {
    in_facet(records, axes, facet).filter(move |r| series_label(r) == norm)
}

/// The series labels of `set` in grid order.
fn series(set: &ResultSet) -> Vec<String> {
    set.series().into_iter().map(|(label, _)| label).collect()
}

/// The other axes with several values, except the norm, the seed and `exclude`.
fn facet_axes(set: &ResultSet, exclude: &[AxisKey]) -> Vec<AxisKey> {
    let mut excluded = vec![AxisKey::Norm, AxisKey::Seed];
    excluded.extend_from_slice(exclude);
    set.other_axes(&excluded)
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

/// How each norm's mean error changes from the largest to the smallest batch size, and batch
/// norm's change beside group and layer norm's.
fn batch_size_findings(set: &ResultSet) -> Vec<String> {
    if !set.varies(&AxisKey::BatchSize) {
        return Vec::new();
    }
    let records = &set.records;
    let sizes = set.sorted_labels(&AxisKey::BatchSize);
    let (small, large) = (&sizes[0], &sizes[sizes.len() - 1]);
    let facet_axes = facet_axes(set, &[AxisKey::BatchSize]);
    let mut statements = Vec::new();
    for facet in facets(records, &facet_axes) {
        let mut rises: Vec<(String, f64)> = Vec::new();
        for norm in series(set) {
            let runs = || runs_of(records, &facet_axes, &facet, &norm);
            let at = |size: &String| -> Vec<&RunRecord> {
                runs()
                    .filter(|r| r.label(&AxisKey::BatchSize) == Some(size.as_str()))
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
        statements.extend(rise_comparisons(set, &rises, &facet, (large, small)));
    }
    statements
}

/// Batch norm's rise in error compared with each group and layer norm's, from batch size
/// `large` to `small`.
fn rise_comparisons(
    set: &ResultSet,
    rises: &[(String, f64)],
    facet: &str,
    (large, small): (&str, &str),
) -> Vec<String> {
    let kinds = set.series();
    let kind_of = move |norm: &String| kinds.iter().find(|(l, _)| l == norm).map(|(_, k)| *k);
    let of_kind = move |wanted: &'static [&'static str]| {
        let kind_of = kind_of.clone();
        rises
            .iter()
            .filter(move |(norm, _)| kind_of(norm).is_some_and(|k| wanted.contains(&k)))
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
fn other_axis_findings(set: &ResultSet) -> Vec<String> {
    let records = &set.records;
    let mut statements = Vec::new();
    for axis in set.other_axes(&AxisKey::WITH_VIEWS_OF_THEIR_OWN) {
        let values = set.labels(&axis);
        let Some((first, rest)) = values.split_first() else {
            continue;
        };
        let facet_axes = facet_axes(set, std::slice::from_ref(&axis));
        for facet in facets(records, &facet_axes) {
            for norm in series(set) {
                let at = |value: &String| {
                    Spread::of(
                        runs_of(records, &facet_axes, &facet, &norm)
                            .filter(|r| r.label(&axis) == Some(value.as_str()))
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
fn train_eval_findings(set: &ResultSet) -> Vec<String> {
    let axes = facet_axes(set, &[]);
    settings(set)
        .into_iter()
        .filter_map(|(_, runs)| {
            let pairs: Vec<(f64, f64)> = runs
                .iter()
                .filter_map(|r| final_error(r).zip(final_score(r, EvalMode::TrainMode)))
                .collect();
            let eval = Spread::of(pairs.iter().map(|p| p.0))?;
            let train = Spread::of(pairs.iter().map(|p| p.1))?;
            let gap = Spread::of(pairs.iter().map(|p| p.1 - p.0))?;
            let name = [series_label(runs[0]), describe(runs[0], &axes)]
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
                .filter_map(|r| {
                    let last = last_score(r, EvalMode::Eval);
                    last.zip(last_score(r, EvalMode::Precise))
                })
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
fn divergence_findings(set: &ResultSet, axis: &AxisKey) -> Vec<String> {
    if !set.varies(axis) {
        return Vec::new();
    }
    let records = &set.records;
    let values = set.sorted_labels(axis);
    let description = axis.describe();
    let facet_axes = facet_axes(set, std::slice::from_ref(axis));
    let mut statements = Vec::new();
    for facet in facets(records, &facet_axes) {
        for norm in series(set) {
            let at = |value: &String| -> Vec<&RunRecord> {
                runs_of(records, &facet_axes, &facet, &norm)
                    .filter(|r| r.label(axis) == Some(value.as_str()))
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

/// How much each setting's gradient shrinks going back in time: relative to the last step's,
/// at a quarter and at all of the farthest distance that every measurement reaches, at
/// initialization and after training (geometric means over seeds, for ratios spanning orders of
/// magnitude; a ratio that underflowed to 0 is counted apart).
fn gradient_flow_findings(set: &ResultSet) -> Vec<String> {
    let flows = |runs: &[&RunRecord], trained: bool| -> Vec<Vec<(usize, f64)>> {
        runs.iter()
            .flat_map(|r| &r.gradient_flow)
            .filter(|flow| (flow.step > 0) == trained)
            .map(GradientFlow::relative_to_last)
            .filter(|ratios| ratios.len() >= 2)
            .collect()
    };
    let all: Vec<&RunRecord> = set.records.iter().collect();
    let mut statements = Vec::new();
    let first_steps: Vec<usize> = all
        .iter()
        .flat_map(|r| r.gradient_flow.iter().map(|flow| flow.first_step))
        .collect();
    if let (Some(fewest), Some(most)) = (first_steps.iter().min(), first_steps.iter().max())
        && *most > 0
    {
        statements.push(format!(
            "Every sequence of the measured batch has left the blank start they share by step \
             {fewest}..{most} (over seeds): the gradient before that is left out of the plot \
             and of these numbers, since a norm's per-step statistics there come from a few \
             sequences or none and its backward divides by sqrt(variance + epsilon)."
        ));
    }
    for (trained, when) in [(false, "at initialization"), (true, "after training")] {
        let Some(farthest) = flows(&all, trained).iter().map(|f| f.len() - 1).min() else {
            continue;
        };
        for (_, runs) in settings(set) {
            let ratios = flows(&runs, trained);
            let parts: Vec<String> = [farthest / 4, farthest]
                .iter()
                .filter_map(|&back| gradient_at(&ratios, back))
                .collect();
            if !parts.is_empty() {
                statements.push(format!(
                    "`{}` {when}: the gradient with respect to h_t is {} times the last \
                     step's (geometric mean over seeds, min..max).",
                    series_label(runs[0]),
                    parts.join(" and "),
                ));
            }
        }
    }
    statements
}

/// `0.1 (0.09..0.11) at 130 steps back`: the ratios of the seeds' measurements `back` steps
/// before the last, with those that underflowed to 0 counted apart.
fn gradient_at(flows: &[Vec<(usize, f64)>], back: usize) -> Option<String> {
    let ratios: Vec<f64> = flows
        .iter()
        .filter_map(|flow| flow.iter().find(|(b, _)| *b == back).map(|&(_, r)| r))
        .collect();
    let underflowed = ratios.iter().filter(|&&r| r == 0.0).count();
    let logs = ratios.iter().filter(|&&r| r > 0.0).map(|r| r.log10());
    let text = match Spread::of(logs.collect::<Vec<_>>()) {
        None if underflowed == 0 => return None,
        None => "0 (underflowed in float32)".to_string(),
        Some(spread) => format!(
            "{} ({}..{}{})",
            fmt_ratio(10f64.powf(spread.mean)),
            fmt_ratio(10f64.powf(spread.min)),
            fmt_ratio(10f64.powf(spread.max)),
            match underflowed {
                0 => String::new(),
                n => format!("; 0 in {n} more, underflowed in float32"),
            }
        ),
    };
    Some(format!("{text} at {back} steps back"))
}

/// A ratio as a reader wants it: `0.35`, `12`, or `2.1e-7` beyond two orders of magnitude.
fn fmt_ratio(value: f64) -> String {
    match value {
        v if (0.01..1000.0).contains(&v) => fmt_number(v),
        v => format!("{v:.1e}"),
    }
}

/// Each norm's bits per character and error at the longest evaluation length vs at the
/// training length; the verdict is on the bits, the language model's own measure.
fn length_findings(set: &ResultSet) -> Vec<String> {
    let records = &set.records;
    let facet_axes = facet_axes(set, &[]);
    let mut statements = Vec::new();
    for facet in facets(records, &facet_axes) {
        for norm in series(set) {
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
fn percentile_findings(set: &ResultSet) -> Vec<String> {
    let axes = facet_axes(set, &[]);
    percentile_runs(set)
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
                series_label(record),
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
fn step_time_findings(set: &ResultSet) -> Vec<String> {
    let records = &set.records;
    let kinds = set.series();
    // The series without normalization, by the kind of its norm.
    let Some((none_label, _)) = kinds.iter().find(|(_, kind)| *kind == "none") else {
        return Vec::new();
    };
    if kinds.len() < 2 {
        return Vec::new();
    }
    let norms = series(set);
    let facet_axes = facet_axes(set, &[]);
    let facets = facets(records, &facet_axes);
    let time = |facet: &str, norm: &str| {
        Spread::of(runs_of(records, &facet_axes, facet, norm).filter_map(step_ms))
    };
    norms
        .iter()
        .filter(|norm| *norm != none_label)
        .filter_map(|norm| {
            let compared: Vec<(Spread, Spread)> = facets
                .iter()
                .filter_map(|facet| time(facet, none_label).zip(time(facet, norm)))
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
                "`{norm}`: {} ms per step vs {} ms for `{none_label}`: {cost}{noise}.",
                fmt_number(own),
                fmt_number(none)
            ))
        })
        .collect()
}

/// For runs whose norm layers were timed: the part of the step they take, and with both kernel
/// paths, how much faster the fused kernels make them.
fn norm_time_findings(set: &ResultSet) -> Vec<String> {
    let records = &set.records;
    let kernels = AxisKey::NormKernels;
    let facet_axes = facet_axes(set, std::slice::from_ref(&kernels));
    let paths = match set.varies(&kernels) {
        true => set.sorted_labels(&kernels),
        false => vec![String::new()],
    };
    let without_norm: Vec<String> = (set.series().into_iter())
        .filter(|(_, kind)| *kind == "none")
        .map(|(label, _)| label)
        .collect();
    let mut statements = Vec::new();
    for facet in facets(records, &facet_axes) {
        for norm in series(set) {
            let timed: Vec<(String, Spread, Spread)> = paths
                .iter()
                .filter_map(|path| {
                    let runs: Vec<&RunRecord> = runs_of(records, &facet_axes, &facet, &norm)
                        .filter(|r| path.is_empty() || r.label(&kernels) == Some(path.as_str()))
                        .collect();
                    let in_norms = Spread::of(runs.iter().filter_map(|r| norm_ms(r)))?;
                    let step = Spread::of(runs.iter().filter_map(|r| step_ms(r)))?;
                    Some((path.clone(), in_norms, step))
                })
                .collect();
            if timed.is_empty() || without_norm.contains(&norm) {
                continue;
            }
            let parts: Vec<String> = timed
                .iter()
                .map(|(path, in_norms, step)| {
                    let with = match path.is_empty() {
                        true => String::new(),
                        false => format!(" with {kernels} = {path}"),
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
                        // A family without a fused kernel (online norm): one computation twice.
                        true => format!(
                            ": the two take the same time to within {:.0}%{}",
                            (ratio - 1.0) * 100.0,
                            verdict(fast.1, slow.1)
                        ),
                        false => format!(
                            ": {kernels} = {} is {ratio:.1} times faster in the norm layers{}",
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

/// A run's training loss counts as still falling when its last tenth of steps is more than
/// this share below the tenth before.
const STILL_FALLING: f64 = 0.02;

/// How much a finished run's training loss fell from the ninth tenth of its steps to the last
/// tenth, as a share of the ninth's mean; `None` without losses in both.
fn final_loss_drop(record: &RunRecord) -> Option<f64> {
    if record.status != Status::Finished {
        return None;
    }
    let steps = record.steps as f64;
    let mean_between = |from: f64, to: f64| {
        let losses = record.losses.iter().filter(|l| {
            let at = l.step as f64 / steps;
            at > from && at <= to && l.loss.is_finite()
        });
        Spread::of(losses.map(|l| f64::from(l.loss))).map(|s| s.mean)
    };
    let (ninth, last) = (mean_between(0.8, 0.9)?, mean_between(0.9, 1.0)?);
    (ninth > 0.0).then(|| (ninth - last) / ninth)
}

/// Which settings ended training with their loss still falling: the budget did not bring them
/// to a plateau, so their final errors compare models at different stages.
fn plateau_findings(set: &ResultSet) -> Vec<String> {
    let axes = facet_axes(set, &[]);
    let settings: Vec<(String, Spread)> = settings(set)
        .into_iter()
        .filter_map(|(_, runs)| {
            let drop = Spread::of(runs.iter().filter_map(|r| final_loss_drop(r)))?;
            let name = [series_label(runs[0]), describe(runs[0], &axes)]
                .into_iter()
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            Some((name, drop))
        })
        .collect();
    if settings.is_empty() {
        return Vec::new();
    }
    let falling: Vec<String> = (settings.iter())
        .filter(|(_, drop)| drop.mean > STILL_FALLING)
        .map(|(name, drop)| format!("`{name}` ({:.1}% lower)", drop.mean * 100.0))
        .collect();
    let threshold = STILL_FALLING * 100.0;
    let rule = format!(
        "the mean training loss of the last tenth of steps more than {threshold:.0}% below the \
         tenth before, mean over seeds"
    );
    vec![match falling.len() {
        0 => format!(
            "Training loss at the end: flat in all {} settings ({rule}: none).",
            settings.len()
        ),
        n => format!(
            "Training loss at the end: still falling in {n} of {} settings ({rule}): {}; these \
             had not reached a plateau, and their final errors are those of models still \
             improving.",
            settings.len(),
            falling.join(", ")
        ),
    }]
}
