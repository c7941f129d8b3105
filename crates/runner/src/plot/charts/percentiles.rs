//! The 15th, 50th and 85th percentiles of a unit's input over training (the BN paper's Figure 1).

use crate::analysis::{Spread, describe, percentile_runs, unit_zero};
use crate::axes::AxisKey;
use crate::plot::axis::Axis;
use crate::plot::figure::{
    Figure, LegendEntry, Look, NEUTRAL, Panel, Point, Rgb, Series, band_of, extent, x_of,
};
use crate::plot::{Context, Plot};
use crate::result_set::{distinct, series_label};
use crate::results::RunRecord;

/// The 15th, 50th and 85th percentiles of tracked unit 0 at the input of the activation (the
/// `after` summary) over training steps: one row per probe site, one column per norm.
pub(crate) fn percentiles(context: &Context) -> Option<Plot> {
    let runs = percentile_runs(context.set);
    let first = runs.first()?;
    let sites = distinct(runs.iter().flat_map(|r| {
        r.probes
            .iter()
            .flat_map(|p| p.sites.iter().map(|s| s.site.clone()))
    }));
    let column_axes = context.facet_axes(&[]);
    let all_series: Vec<Vec<Vec<Series>>> = sites
        .iter()
        .map(|site| {
            runs.iter()
                .map(|r| percentile_series(r, site, context.palette.color(&series_label(r))))
                .collect()
        })
        .collect();
    let x_max = extent(all_series.iter().flatten().flatten(), x_of)?.1;
    let x = Axis::fit("training step", 0.0, x_max, false);
    let mut panels = Vec::new();
    for (site, row) in sites.iter().zip(all_series) {
        let Some((low, high)) = extent(row.iter().flatten(), band_of) else {
            continue;
        };
        let y = Axis::fit(&format!("{site}: unit 0"), low, high, false);
        for (run, series) in runs.iter().zip(row) {
            let column = [series_label(run), describe(run, &column_axes)]
                .into_iter()
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            panels.push(Panel {
                title: column,
                x: x.clone(),
                y: y.clone(),
                series,
                reference: None,
            });
        }
    }
    let setting = describe(first, &context.set.other_axes(&[AxisKey::Norm]));
    let setting = match setting.is_empty() {
        true => String::new(),
        false => format!(" (the first probed run of each norm: {setting})"),
    };
    Some(Plot {
        file: "percentiles.png".into(),
        caption: format!(
            "The 15th, 50th and 85th percentiles over the batch of tracked unit 0 at the input \
             of the activation (the norm's output) over training steps, as in the batch norm \
             paper's Figure 1: one row per layer, one column per norm{setting}."
        ),
        figure: Figure {
            title: "Activation percentiles during training".into(),
            columns: runs.len(),
            panels,
            legend: vec![
                LegendEntry {
                    label: "50th percentile (median)".into(),
                    color: NEUTRAL,
                    look: Look::Band,
                    variant: 0,
                },
                LegendEntry {
                    label: "15th and 85th percentiles".into(),
                    color: NEUTRAL,
                    look: Look::Thin,
                    variant: 0,
                },
            ],
        },
    })
}

/// The median over a band from the 15th to the 85th percentile, and both edges as thin lines.
fn percentile_series(record: &RunRecord, site: &str, color: Rgb) -> Vec<Series> {
    let track = unit_zero(record, Some(site));
    if track.is_empty() {
        return Vec::new();
    }
    let line = |look, pick: fn(&[f32; 3]) -> (f32, f32, f32)| {
        let points = track
            .iter()
            .map(|(step, p)| {
                let (low, y, high) = pick(p);
                let spread = Spread {
                    mean: f64::from(y),
                    min: f64::from(low),
                    max: f64::from(high),
                    count: 1,
                };
                Point::spread(*step as f64, spread)
            })
            .collect();
        Series::new(color, look, 0, points)
    };
    vec![
        line(Look::Band, |p| (p[0], p[1], p[2])),
        line(Look::Thin, |p| (p[0], p[0], p[0])),
        line(Look::Thin, |p| (p[2], p[2], p[2])),
    ]
}
