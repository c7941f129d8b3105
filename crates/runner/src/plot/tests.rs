//! Tests of the charts: what each draws from a synthetic result set.

use normlab_testkit::{png_size, scratch};

use crate::axes::AxisKey;
use crate::fixtures::{fixture, kernels_fixture, lr_fixture};
use crate::plot::axis::Axis;
use crate::plot::charts::{
    CURVE_POINTS, bits_vs_length, error_vs_axis, error_vs_length, gradient_flow, mean_band,
    step_time, tick_labels,
};
use crate::plot::figure::Stroke;
use crate::plot::figure::{Look, Series};
use crate::plot::palette::{KIND_COLORS, Palette, VARIANT_COLORS};
use crate::plot::{Context, draw_all};
use crate::result_set::ResultSet;
use crate::results::{GradientFlow, PlotFile};

/// Draws `set` into a scratch folder and checks the files drawn, in order, with their
/// pixel sizes, and that nothing else was written. Returns the plots.
fn assert_draws(set: &ResultSet, name: &str, expected: &[(&str, (u32, u32))]) -> Vec<PlotFile> {
    let dir = scratch(name);
    let plots = draw_all(set, &dir).unwrap();
    let files: Vec<&str> = plots.iter().map(|p| p.file.as_str()).collect();
    let wanted: Vec<&str> = expected.iter().map(|(file, _)| *file).collect();
    assert_eq!(files, wanted);
    for (file, size) in expected {
        assert_eq!(png_size(&dir.join(file)), *size, "{file}");
    }
    let pngs = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(pngs, plots.len(), "no other files are written");
    plots
}

#[test]
fn draws_the_plots_the_axes_and_records_call_for_at_their_sizes() {
    let set = fixture();
    // Two batch-size panels side by side; one panel; a 2 x 6 grid of sites x runs.
    assert_draws(
        &set,
        "plots",
        &[
            ("loss_curves.png", (1400, 50 + 427)),
            ("error_vs_batch_size.png", (1000, 50 + 560)),
            ("train_vs_eval.png", (1000, 50 + 560)),
            ("percentiles.png", (1400, 50 + 2 * 300)),
            ("step_time.png", (1000, 50 + 560)),
        ],
    );
}

#[test]
fn sweeps_of_other_axes_get_their_own_plots() {
    let set = lr_fixture();
    // Panels: 6 (dropout x lr) in 3 columns; 2 (dropout); sites x norms; 6; 1; 3 (lr).
    let plots = assert_draws(
        &set,
        "lr-plots",
        &[
            ("loss_curves.png", (1400, 50 + 2 * 300)),
            ("error_vs_lr.png", (1400, 50 + 427)),
            ("percentiles.png", (1400, 50 + 2 * 427)),
            ("error_vs_length.png", (1400, 50 + 2 * 300)),
            ("bits_vs_length.png", (1400, 50 + 2 * 300)),
            ("step_time.png", (1000, 50 + 560)),
            ("error_by_dropout.png", (1400, 50 + 300)),
        ],
    );
    let lr = &plots[1];
    assert!(
        lr.caption.contains("diverged (4) or could not train (0)"),
        "{}",
        lr.caption
    );
    assert!(
        lr.caption.contains("One panel per dropout."),
        "{}",
        lr.caption
    );

    let context = Context::new(&set);
    let by_dropout = error_vs_axis(&context, &AxisKey::from_name("dropout"), false).unwrap();
    let x = &by_dropout.figure.panels[0].x;
    assert!(
        !x.log,
        "dropout 0 cannot go on a log scale, nor should categories"
    );
    assert_eq!(x.ticks, [(0.0, "0.0".into()), (1.0, "0.5".into())]);
    let length = error_vs_length(&context).unwrap();
    let layer = &length.figure.panels[0].series[1];
    let means: Vec<(f64, f64)> = layer.points.iter().map(|p| (p.x, p.y)).collect();
    // The first panel is dropout 0, lr 0.01: layer norm's 9% at the training length, 3 more
    // at length 256.
    assert_eq!(length.figure.panels[0].title, "dropout=0.0, lr=0.01");
    assert!((means[0].1 - 9.0).abs() < 1e-4 && (means[1].1 - 12.0).abs() < 1e-4);
    assert_eq!((means[0].0, means[1].0), (64.0, 256.0));
    // Its cross-entropy is a tenth of its error in nats: 0.9 and 1.2, in bits / ln 2.
    let bits = bits_vs_length(&context).unwrap();
    let layer = &bits.figure.panels[0].series[1];
    let ln2 = std::f64::consts::LN_2;
    assert!((layer.points[0].y - 0.9 / ln2).abs() < 1e-4);
    assert!((layer.points[1].y - 1.2 / ln2).abs() < 1e-4);
}

#[test]
fn captions_count_the_runs_without_a_result() {
    let set = fixture();
    let context = Context::new(&set);
    let plot = error_vs_axis(&context, &AxisKey::BatchSize, true).unwrap();
    assert!(
        plot.caption.contains("diverged (1) or could not train (0)"),
        "{}",
        plot.caption
    );
    let crosses: Vec<&Series> = plot.figure.panels[0]
        .series
        .iter()
        .filter(|s| s.look == Look::Failed)
        .collect();
    assert_eq!(crosses.len(), 1);
    assert_eq!(crosses[0].points[0].x, 2.0);
    assert_eq!(crosses[0].color, KIND_COLORS[0].1);
}

#[test]
fn error_points_are_means_with_min_max_over_seeds() {
    let set = fixture();
    let context = Context::new(&set);
    let plot = error_vs_axis(&context, &AxisKey::BatchSize, true).unwrap();
    let batch = plot.figure.panels[0]
        .series
        .iter()
        .find(|s| s.color == KIND_COLORS[1].1 && s.look != Look::Failed)
        .unwrap();
    assert_eq!(
        batch.look,
        Look::Marks {
            stroke: Stroke::Solid,
            joined: true
        }
    );
    let at_2 = batch.points[0];
    assert_eq!(at_2.x, 2.0);
    assert!((at_2.y - 20.5).abs() < 1e-4 && (at_2.low - 20.0).abs() < 1e-4);
    assert!((at_2.high - 21.0).abs() < 1e-4);
    // Ticks exactly at the batch sizes, on a log scale.
    let x = &plot.figure.panels[0].x;
    assert!(x.log);
    assert_eq!(x.ticks, [(2f64.ln(), "2".into()), (8f64.ln(), "8".into())]);
}

#[test]
fn nothing_to_plot_draws_nothing() {
    let mut set = fixture();
    set.records.clear();
    let dir = scratch("no-plots");
    assert_eq!(draw_all(&set, &dir).unwrap(), Vec::new());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn colours_are_fixed_by_kind_and_variants_sorted() {
    let labels = [
        ("group(groups=4)", "group"),
        ("layer", "layer"),
        ("batch(per_step=30)", "batch"),
        ("none", "none"),
        ("batch", "batch"),
        ("rms(eps=1)", "rms"),
    ]
    .map(|(label, kind)| (label.to_string(), kind));
    let palette = Palette::new(&labels);
    let reversed: Vec<(String, &str)> = labels.iter().rev().cloned().collect();
    for (label, _) in &labels {
        assert_eq!(palette.color(label), Palette::new(&reversed).color(label));
    }
    let kind = |k: &str| KIND_COLORS.iter().find(|(n, _)| *n == k).unwrap().1;
    assert_eq!(palette.color("none"), kind("none"));
    assert_eq!(palette.color("batch"), kind("batch"));
    assert_eq!(palette.color("group(groups=4)"), kind("group"));
    assert_eq!(palette.color("rms(eps=1)"), kind("rms"));
    assert_eq!(palette.color("batch(per_step=30)"), VARIANT_COLORS[0]);
}

#[test]
fn loss_band_counts_only_curves_that_reach_each_x() {
    let long = vec![(0.0, 2.0), (10.0, 1.0)];
    let short = vec![(0.0, 4.0), (5.0, 3.0)];
    let band = mean_band(&[long, short]);
    assert_eq!(band.len(), CURVE_POINTS);
    assert_eq!((band[0].y, band[0].low, band[0].high), (3.0, 2.0, 4.0));
    let last = band[CURVE_POINTS - 1];
    assert_eq!((last.x, last.y, last.low, last.high), (10.0, 1.0, 1.0, 1.0));
}

#[test]
fn axes_switch_to_log_beyond_twenty_fold() {
    assert!(!Axis::fit("loss", 0.1, 1.9, true).log);
    let log = Axis::fit("loss", 0.01, 2.0, true);
    assert!(log.log && log.label.ends_with("(log scale)"));
    let texts: Vec<&str> = log.ticks.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        texts,
        ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2"]
    );
    let linear = Axis::fit("error", 0.0, 10.0, false);
    let texts: Vec<&str> = linear.ticks.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts, ["0", "2", "4", "6", "8", "10"]);
}

#[test]
fn gradient_flow_draws_log_norms_relative_to_the_last_step_at_init_and_after_training() {
    let mut set = fixture();
    let context = Context::new(&set);
    assert!(
        gradient_flow(&context).is_none(),
        "nothing measured, no plot"
    );
    for record in &mut set.records {
        record.gradient_flow = vec![
            GradientFlow {
                step: 0,
                first_step: 5,
                norms: vec![1e-3, 1e-2, 1e-1],
            },
            GradientFlow {
                step: 10,
                first_step: 5,
                norms: vec![2.0, 2.0, 2.0],
            },
        ];
    }
    let context = Context::new(&set);
    let plot = gradient_flow(&context).unwrap();
    let panels = &plot.figure.panels;
    let initial = panels
        .iter()
        .find(|p| p.title.ends_with("at initialization"))
        .unwrap();
    let trained = panels
        .iter()
        .find(|p| p.title.ends_with("after training"))
        .unwrap();
    let series = &initial.series[0];
    assert_eq!(series.look, Look::Band);
    // Steps back from the last: 0, 1, 2; relative to the last step's 1e-1, a straight line
    // from 0 down to -2.
    let (first, last) = (
        series.points.first().unwrap(),
        series.points.last().unwrap(),
    );
    assert!((first.x, first.y) == (0.0, 0.0), "{first:?}");
    assert!(
        (last.x - 2.0).abs() < 1e-9 && (last.y + 2.0).abs() < 1e-6,
        "{last:?}"
    );
    for point in &series.points {
        assert!((point.y + point.x).abs() < 1e-6, "{point:?}");
    }
    assert!(trained.series[0].points.iter().all(|p| p.y.abs() < 1e-9));
    // A ratio that underflowed to 0 ends the curve instead of reaching -infinity.
    for record in &mut set.records {
        record.gradient_flow[0].norms = vec![0.0, 1e-2, 1e-1];
    }
    let context = Context::new(&set);
    let plot = gradient_flow(&context).unwrap();
    let initial = &plot.figure.panels[0].series[0];
    assert!(initial.points.iter().all(|p| p.x <= 1.0 && p.y.is_finite()));
}

#[test]
fn long_legend_labels_wrap_between_their_options() {
    let label = "batch_renorm(d_max_steps=1000,r_max_steps=1000,warmup_steps=200): trained";
    assert_eq!(
        crate::plot::render::wrap(label, 24),
        [
            "batch_renorm(",
            "d_max_steps=1000,",
            "r_max_steps=1000,",
            "warmup_steps=200):",
            "trained"
        ]
    );
    assert_eq!(
        crate::plot::render::wrap("group(groups=2,weight_standardization=true)", 24),
        ["group(groups=2,", "weight_standardization=", "true)"]
    );
    assert_eq!(
        crate::plot::render::wrap("none: eval mode", 24),
        ["none: eval mode"]
    );
}

#[test]
fn step_times_place_each_norm_at_its_own_x_with_the_norm_layers_dashed() {
    let set = kernels_fixture();
    let context = Context::new(&set);
    let plot = step_time(&context).unwrap();
    assert_eq!(
        plot.figure.columns, 1,
        "norm names along x need the full width"
    );
    let fastest = &plot.figure.panels[0];
    // `none` times no norm layer; `batch` has both measures, shifted apart only by measure.
    let looks: Vec<(f64, f64, f64)> = fastest
        .series
        .iter()
        .map(|s| (s.points[0].x, s.points[0].y, s.dodge))
        .collect();
    assert_eq!(looks.len(), 3, "{looks:?}");
    let (none, batch_step, batch_norms) = (looks[0], looks[1], looks[2]);
    assert_eq!(none.2, batch_step.2, "the same measure, the same shift");
    assert!(batch_norms.2 > batch_step.2);
    assert!(batch_step.0 > none.0);
    assert!((batch_step.1 - 8.05).abs() < 1e-9 && (batch_norms.1 - 2.05).abs() < 1e-9);
    assert!(matches!(
        fastest.series[2].look,
        Look::Marks {
            stroke: Stroke::Dashed,
            ..
        }
    ));
}

#[test]
fn crowded_category_ticks_drop_their_options_when_the_names_stay_distinct() {
    let labels = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let crowded = labels(&[
        "none",
        "group(groups=8)",
        "instance(affine=true)",
        "evonorm_s0(groups=8)",
        "batch_renorm(warmup_steps=200)",
    ]);
    let kinds = labels(&["none", "group", "instance", "evonorm_s0", "batch_renorm"]);
    assert_eq!(tick_labels(&crowded, &kinds), kinds);
    let ambiguous = labels(&[
        "batch(gamma_init=0.1)",
        "batch(gamma_init=0.1,per_step=32)",
        "layer(epsilon=0.001)",
    ]);
    let kinds = labels(&["batch", "batch", "layer"]);
    assert_eq!(
        tick_labels(&ambiguous, &kinds),
        ambiguous,
        "two would read `batch`"
    );
    let roomy = labels(&["none", "group(groups=8)"]);
    assert_eq!(tick_labels(&roomy, &labels(&["none", "group"])), roomy);
}
