//! Experiment files: grids, and errors that name the file, the line and the field.

use std::path::Path;

use normlab_runner::config::{ConfigError, Experiment};
use normlab_testkit::SMALL_EXPERIMENT;

fn parse(text: &str) -> Result<Experiment, ConfigError> {
    Experiment::parse(Path::new("experiments/test.toml"), text.to_string())
}

/// A valid file: three norms x two batch sizes x two seeds.
const GOOD: &str = SMALL_EXPERIMENT;

#[test]
fn list_valued_fields_are_axes_and_the_grid_is_their_product() {
    let experiment = parse(GOOD).unwrap();
    let names: Vec<&str> = experiment.axes.iter().map(|a| a.key.name()).collect();
    assert_eq!(names, ["norm", "batch_size", "seed"]);
    assert_eq!(experiment.points.len(), 3 * 2 * 2);
    let point = &experiment.points[9];
    let labels: Vec<&str> = point.axes.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["group(groups=4)", "2", "1"]);
    assert_eq!(point.id, "norm=group(groups=4),batch_size=2,seed=1");
    assert_eq!(point.run.train.batch_size, 2);
    assert_eq!(point.run.model.norm().kind(), "group");
    // An MLP's `hidden` is a list by nature: one value, not an axis.
    let ids: std::collections::HashSet<_> = experiment.points.iter().map(|p| &p.id).collect();
    assert_eq!(ids.len(), experiment.points.len(), "ids are unique");
}

#[test]
fn a_list_of_lists_makes_a_native_list_field_an_axis() {
    let text = GOOD.replace("hidden = [8, 8]", "hidden = [[32], [64, 64]]");
    let experiment = parse(&text).unwrap();
    assert_eq!(experiment.axes[0].key.name(), "hidden");
    assert_eq!(experiment.points.len(), 24);
    assert_eq!(experiment.points[0].axes[0].label, "[32]");
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn errors_name_file_line_and_field() {
    let err = error(&GOOD.replace("hidden = [8, 8]", "hiden = [8, 8]"));
    assert!(
        err.starts_with("experiments/test.toml:9: field `model.hiden`"),
        "{err}"
    );
    assert!(err.contains("expected one of `hidden`"), "{err}");

    let err = error(&GOOD.replace("lr = 0.1", "lr = \"fast\""));
    assert!(
        err.starts_with("experiments/test.toml:15: field `train.lr`"),
        "{err}"
    );

    // The budget: one of two fields, held as one value.
    let err = error(&GOOD.replace("samples = 100", ""));
    assert!(
        err.contains(":12: field `train`") && err.contains("exactly one training budget"),
        "{err}"
    );
    let err = error(&GOOD.replace("samples = 100", "samples = 100\nepochs = 2"));
    assert!(
        err.contains(":16: field `train.samples`: `epochs` is given too"),
        "{err}"
    );
    let err = error(&GOOD.replace("samples = 100", "epochs = 0"));
    assert!(
        err.contains(":16: field `train.epochs`: must be a finite number > 0"),
        "{err}"
    );
    let err = error(&GOOD.replace("samples = 100", "samples = \"all\""));
    assert!(
        err.contains(":16: field `train.samples`: invalid type"),
        "{err}"
    );

    let err = error(&GOOD.replace("lr = 0.1", "lr = 0.1\nbatch = 3"));
    assert!(
        err.starts_with("experiments/test.toml:16: field `train.batch`"),
        "{err}"
    );
    // The budget's fields are among those a `[train]` table may hold.
    assert!(err.contains("`epochs`, `samples`"), "{err}");

    let err = error(&GOOD.replace("[train]", "[trian]"));
    assert!(err.contains(":12: field `trian`: unknown section"), "{err}");

    let err = error(&GOOD.replace("lr = 0.1", "lr = [0.1"));
    assert!(
        err.starts_with("experiments/test.toml: not valid TOML") && err.contains("line 16"),
        "{err}"
    );
}

#[test]
fn settings_wrong_whatever_the_data_are_refused_when_the_file_is_read() {
    let err = error(&GOOD.replace("seed = [0, 1]", "seed = []"));
    assert!(
        err.starts_with("experiments/test.toml:14: field `train.seed`")
            && err.contains("an empty list"),
        "{err}"
    );
    let err = error(&GOOD.replace(
        "norm = [\"none\", \"batch\", { kind = \"group\", groups = 4 }]",
        "norm = []",
    ));
    assert!(
        err.contains(":10: field `model.norm`: an empty list"),
        "{err}"
    );

    let cnn = GOOD
        .replace("kind = \"mlp\"", "kind = \"cnn\"")
        .replace("hidden = [8, 8]", "channels = []");
    let err = error(&cnn);
    assert!(
        err.contains(":9: field `model.channels`") && err.contains("at least one block"),
        "{err}"
    );
    let err = error(&GOOD.replace("hidden = [8, 8]", "hidden = [8, 0]"));
    assert!(
        err.contains(":9: field `model.hidden`") && err.contains("at least 1 unit"),
        "{err}"
    );

    // Norm options that no width makes right, each at the norm's line.
    for (norm, field, expected) in [
        (
            "{ kind = \"batch\", epsilon = 0.0 }",
            "epsilon",
            "a finite number > 0",
        ),
        ("{ kind = \"batch\", momentum = 1.5 }", "momentum", "[0, 1]"),
        (
            "{ kind = \"batch\", per_step = 0 }",
            "per_step",
            "at least 1 time step",
        ),
        ("{ kind = \"group\", groups = 0 }", "groups", "at least 1"),
    ] {
        let text = GOOD.replace("{ kind = \"group\", groups = 4 }", norm);
        let err = error(&text);
        assert!(
            err.starts_with("experiments/test.toml:10: field `model.norm`")
                && err.contains(field)
                && err.contains(expected),
            "{norm}: {err}"
        );
    }
    // A group count that does not divide a layer's width depends on the model: not an error of
    // the file, the run is recorded as impossible instead.
    parse(&GOOD.replace("groups = 4", "groups = 5")).unwrap();
}

#[test]
fn unknown_names_list_the_valid_ones() {
    let err = error(&GOOD.replace("\"none\", \"batch\"", "\"none\", \"batchnorm\""));
    assert!(
        err.starts_with("experiments/test.toml:10: field `model.norm`"),
        "{err}"
    );
    assert!(
        err.contains("unknown variant `batchnorm`")
            && err.contains("`group`")
            && err.contains("`rms`"),
        "{err}"
    );

    let err = error(&GOOD.replace("set = \"digits\"", "set = \"cifar10\""));
    assert!(
        err.starts_with("experiments/test.toml:5: field `data.set`"),
        "{err}"
    );
    assert!(
        err.contains("`fashion_mnist`") && err.contains("`japanese_vowels`"),
        "{err}"
    );

    let err = error(&GOOD.replace("lr = 0.1", "lr = 0.1\noptimizer = \"lbfgs\""));
    assert!(
        err.contains("field `train.optimizer`") && err.contains("`adam`"),
        "{err}"
    );

    let err = error(&GOOD.replace("lr = 0.1", "lr = 0.1\nsubnormals = \"zero\""));
    assert!(
        err.starts_with("experiments/test.toml:16: field `train.subnormals`")
            && err.contains("`keep`")
            && err.contains("`flush`"),
        "{err}"
    );
}

#[test]
fn linear_learning_rate_scaling_follows_the_batch_size() {
    let text = GOOD.replace("lr = 0.1", "lr = 0.1\nlr_reference_batch = 32");
    let experiment = parse(&text).unwrap();
    let lr: Vec<f64> = experiment
        .points
        .iter()
        .take(4)
        .map(|p| p.run.lr())
        .collect();
    assert_eq!(
        lr,
        [
            0.1 * 2.0 / 32.0,
            0.1 * 2.0 / 32.0,
            0.1 * 8.0 / 32.0,
            0.1 * 8.0 / 32.0
        ]
    );
}

#[test]
fn every_committed_experiment_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let experiment = Experiment::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!experiment.points.is_empty(), "{}", path.display());
            assert!(
                !experiment.description.is_empty(),
                "{} has no description",
                path.display()
            );
            count += 1;
        }
    }
    assert!(count >= 9, "experiments/ lost files: {count}");
}

#[test]
fn extra_blocks_add_runs_on_the_grid_s_axes_and_each_runs_once() {
    let text = format!(
        "{GOOD}\n[[extra]]\nmodel.norm = [\"batch\", {{ kind = \"group\", groups = 4 }}]\n\
         train.batch_size = 2\ntrain.seed = [1, 2, 3]\n"
    );
    let experiment = parse(&text).unwrap();
    // Seed 1 is in the grid already: only seeds 2 and 3 are new, for two norms at batch 2.
    assert_eq!(experiment.points.len(), 12 + 2 * 2);
    let extra: Vec<&str> = experiment.points[12..]
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(
        extra,
        [
            "norm=batch,batch_size=2,seed=2",
            "norm=batch,batch_size=2,seed=3",
            "norm=group(groups=4),batch_size=2,seed=2",
            "norm=group(groups=4),batch_size=2,seed=3",
        ]
    );
    assert_eq!(experiment.points[15].run.train.seed, 3);
    assert_eq!(experiment.points[15].run.model.norm().kind(), "group");
}

#[test]
fn an_extra_block_names_only_axes_of_the_grid() {
    let text = format!("{GOOD}\n[[extra]]\ntrain.lr = 0.5\n");
    let err = error(&text);
    assert!(
        err.starts_with("experiments/test.toml:19: field `extra.train.lr`"),
        "{err}"
    );
    assert!(
        err.contains("(model.norm, train.batch_size, train.seed)"),
        "{err}"
    );
}

#[test]
fn weight_standardization_belongs_to_the_model_not_the_norm() {
    // GN+WS is `[model] weight_standardization = true`: a norm that names it is an unknown
    // field of the norm, located, rather than rewritten into the model before parsing.
    let text = GOOD.replace(
        "{ kind = \"group\", groups = 4 }]",
        "{ kind = \"group\", groups = 4, weight_standardization = true }]",
    );
    let err = error(&text);
    assert!(
        err.contains("field `model.norm.weight_standardization`: unknown field"),
        "{err}"
    );
}

#[test]
fn precise_batches_are_a_count_or_one_epoch() {
    use normlab_runner::config::PreciseBatches;
    let with =
        |value: &str| GOOD.replace("lr = 0.1", &format!("lr = 0.1\nprecise_batches = {value}"));
    let experiment = parse(&with("\"epoch\"")).unwrap();
    let precise = experiment.points[0].run.train.precise_batches.unwrap();
    assert_eq!(precise, PreciseBatches::Epoch);
    assert_eq!(precise.count(250), 250, "one epoch is every batch of it");
    let experiment = parse(&with("40")).unwrap();
    let precise = experiment.points[0].run.train.precise_batches.unwrap();
    assert_eq!(
        (precise, precise.count(250)),
        (PreciseBatches::Count(40), 40)
    );

    for (value, why) in [
        ("0", "invalid value: integer `0`"),
        ("-1", "invalid value: integer `-1`"),
        ("1.5", "invalid type: floating point `1.5`"),
        ("\"all\"", "invalid value: string \"all\""),
    ] {
        let err = error(&with(value));
        assert!(
            err.starts_with("experiments/test.toml:16: field `train.precise_batches`"),
            "{err}"
        );
        assert!(err.contains(why), "{err}");
        assert!(
            err.contains("expected a number of batches (at least 1) or \"epoch\""),
            "{err}"
        );
    }
}
