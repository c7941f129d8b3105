//! Every invalid config and misuse gives an error that names what is wrong.

mod common;

use burn::prelude::*;
use normlab_norm::*;

use common::*;

fn init_error(config: NormConfig, features: usize) -> String {
    let err = config
        .init(features, &device())
        .expect_err("config must be rejected");
    err.to_string()
}

#[test]
fn invalid_configs_name_the_field_and_the_value() {
    let cases = [
        (
            NormConfig::Group(GroupNormConfig::new(5)),
            64,
            "`groups` = 5",
            "divisor of num_features = 64",
        ),
        (
            NormConfig::Group(GroupNormConfig::default().with_channels_per_group(Some(3))),
            8,
            "`channels_per_group` = 3",
            "divisor of num_features = 8",
        ),
        (
            NormConfig::Group(GroupNormConfig::default().with_channels_per_group(Some(0))),
            8,
            "`channels_per_group` = 0",
            "at least 1",
        ),
        (
            NormConfig::Group(GroupNormConfig::new(0)),
            64,
            "`groups` = 0",
            "at least 1",
        ),
        (
            NormConfig::Batch(BatchNormConfig::default().with_epsilon(0.0)),
            8,
            "`epsilon` = 0",
            "> 0",
        ),
        (
            NormConfig::Layer(LayerNormConfig::default().with_epsilon(-1e-5)),
            8,
            "`epsilon` = -0.00001",
            "> 0",
        ),
        (
            NormConfig::Rms(RmsNormConfig::default().with_epsilon(f64::NAN)),
            8,
            "`epsilon` = NaN",
            "> 0",
        ),
        (
            NormConfig::Batch(BatchNormConfig::default().with_momentum(Momentum::Exponential(1.5))),
            8,
            "`momentum` = 1.5",
            "[0, 1]",
        ),
        (
            NormConfig::Instance(
                InstanceNormConfig::default().with_momentum(Momentum::Exponential(-0.1)),
            ),
            8,
            "`momentum` = -0.1",
            "[0, 1]",
        ),
        (
            NormConfig::Layer(LayerNormConfig::default()),
            0,
            "`num_features` = 0",
            "at least 1",
        ),
        (NormConfig::None, 0, "`num_features` = 0", "at least 1"),
        (
            NormConfig::Batch(BatchNormConfig::default().with_per_step(Some(0))),
            8,
            "`per_step` = 0",
            "at least 1",
        ),
        (
            NormConfig::Layer(LayerNormConfig::default().with_gamma_init(f64::INFINITY)),
            8,
            "`gamma_init` = inf",
            "finite",
        ),
        (
            NormConfig::Batch(BatchNormConfig::default().with_ghost_batch(Some(0))),
            8,
            "`ghost_batch` = 0",
            "at least 1 sample",
        ),
        (
            NormConfig::BatchRenorm(BatchRenormConfig::default().with_r_max(0.5)),
            8,
            "`r_max` = 0.5",
            ">= 1",
        ),
        (
            NormConfig::BatchRenorm(BatchRenormConfig::default().with_d_max(-1.0)),
            8,
            "`d_max` = -1",
            ">= 0",
        ),
        (
            NormConfig::BatchRenorm(BatchRenormConfig::default().with_r_max_steps(10)),
            8,
            "`r_max_steps` = 10",
            "warmup_steps = 5000",
        ),
        (
            NormConfig::EvoNormS0(EvoNormS0Config::default()),
            8,
            "`groups` = 32",
            "divisor of num_features = 8",
        ),
        (
            NormConfig::Online(OnlineNormConfig::default().with_alpha_forward(1.5)),
            8,
            "`alpha_forward` = 1.5",
            "[0, 1]",
        ),
        (
            NormConfig::Frn(FrnConfig::default().with_epsilon(0.0)),
            8,
            "`epsilon` = 0",
            "> 0",
        ),
    ];
    for (config, features, names, expected) in cases {
        let message = init_error(config.clone(), features);
        assert!(message.contains(names), "{config:?}: {message}");
        assert!(message.contains(expected), "{config:?}: {message}");
        assert_eq!(config.validate(features).unwrap_err().to_string(), message);
    }
}

#[test]
fn options_wrong_at_any_width_are_found_without_a_width() {
    let wrong = [
        NormConfig::Group(GroupNormConfig::new(0)),
        NormConfig::EvoNormS0(EvoNormS0Config::default().with_groups(0)),
        NormConfig::Batch(BatchNormConfig::default().with_epsilon(0.0)),
        NormConfig::Frn(FrnConfig::default().with_epsilon(-1.0)),
        NormConfig::Online(OnlineNormConfig::default().with_alpha_forward(1.5)),
    ];
    for config in wrong {
        assert!(config.validate_options().is_err(), "{config:?}");
    }
    // Whether 5 groups divide a layer depends on the layer: not an error yet.
    let depends = [
        NormConfig::Group(GroupNormConfig::new(5)),
        NormConfig::EvoNormS0(EvoNormS0Config::default()),
        NormConfig::Batch(BatchNormConfig::default()),
    ];
    for config in depends {
        config.validate_options().unwrap();
    }
}

#[test]
fn unknown_kinds_and_fields_list_what_is_valid() {
    let err = "batchnorm".parse::<NormConfig>().unwrap_err().to_string();
    assert!(
        err.contains("\"batchnorm\"")
            && err.contains(
                "none, batch, layer, instance, group, rms, batch_renorm, frn, evonorm_s0, \
                 evonorm_b0, online"
            ),
        "{err}"
    );

    let err = serde_json::from_str::<NormConfig>(r#"{"kind": "weight"}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown variant `weight`") && err.contains("`group`"),
        "{err}"
    );
    let err = serde_json::from_str::<NormConfig>(r#"{"kind": "group", "group": 4}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown field `group`") && err.contains("`groups`"),
        "{err}"
    );
    let err = serde_json::from_str::<NormConfig>(r#"{"kind": "batch", "momentum": "slow"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"cumulative\""), "{err}");
}

#[test]
fn configs_round_trip_and_fill_defaults() {
    let config: NormConfig =
        serde_json::from_str(r#"{"kind": "batch", "momentum": "cumulative", "per_step": 30}"#)
            .unwrap();
    let expected = BatchNormConfig::default()
        .with_momentum(Momentum::Cumulative)
        .with_per_step(Some(30));
    assert_eq!(config, NormConfig::Batch(expected));
    // The same options read without their tag, as a caller that locates errors reads them.
    let options = serde_json::json!({"momentum": "cumulative", "per_step": 30});
    assert_eq!(NormConfig::from_options("batch", options).unwrap(), config);
    let options = serde_json::json!({"groups": 4});
    let group = NormConfig::from_options("group", options).unwrap();
    assert_eq!(group, NormConfig::Group(GroupNormConfig::new(4)));
    for (kind, options, why) in [
        ("none", r#"{"groups": 4}"#, "unknown field `groups`"),
        (
            "frn",
            r#"{"learned_epsilon": 1}"#,
            "invalid type: integer `1`",
        ),
        ("bn", "{}", "unknown variant `bn`"),
    ] {
        let options: serde_json::Value = serde_json::from_str(options).unwrap();
        let err = NormConfig::from_options(kind, options).unwrap_err();
        assert!(err.to_string().contains(why), "{kind}: {err}");
    }
    for kind in NormConfig::KINDS {
        let config: NormConfig = kind.parse().unwrap();
        assert_eq!(config.kind(), kind);
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            serde_json::from_str::<NormConfig>(&json).unwrap(),
            config,
            "{json}"
        );
    }
}

#[test]
fn batch_norm_refuses_to_train_on_one_value_per_channel() {
    let device = train_device();
    let norm = NormConfig::Batch(BatchNormConfig::default())
        .init(16, &device)
        .unwrap();
    let err = norm
        .forward(Tensor::<2>::ones([1, 16], &device))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("BatchNorm(16 features)") && err.contains("[1, 16, 1]"),
        "{err}"
    );
    // A conv batch of one has H x W values per channel: fine.
    norm.forward(Tensor::<4>::ones([1, 16, 2, 2], &device))
        .unwrap();
    // Eval at batch 1 is fine too.
    norm.valid()
        .forward(Tensor::<2>::ones([1, 16], &common::device()))
        .unwrap();
    // A batch of one sequence has one value per feature at every step, padding or not.
    let err = norm
        .forward_sequence(Tensor::ones([1, 1, 16], &device), None)
        .unwrap_err();
    assert!(
        matches!(err, NormError::SingleValueStatistics { .. }),
        "{err}"
    );
}

#[test]
fn instance_norm_needs_a_spatial_axis() {
    let norm = InstanceNormConfig::default().init(4, &device()).unwrap();
    let err = norm
        .forward(Tensor::<2>::ones([8, 4], &device()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("InstanceNorm(4 features)") && err.contains("[8, 4, 1]"),
        "{err}"
    );
}

#[test]
fn shape_mismatches_name_the_layer_and_both_shapes() {
    let device = device();
    let norm = NormConfig::Group(GroupNormConfig::new(4))
        .init(8, &device)
        .unwrap();
    let err = norm
        .forward(Tensor::<4>::ones([2, 6, 3, 3], &device))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("GroupNorm(8 features, 4 groups)")
            && err.contains("[N, 8, ...]")
            && err.contains("[2, 6, 3, 3]"),
        "{err}"
    );
    let err = norm
        .forward_sequence(Tensor::ones([2, 5, 6], &device), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[N, T, 8]") && err.contains("[2, 5, 6]"),
        "{err}"
    );
    let err = norm
        .forward_step(Tensor::ones([2, 6], &device), 0, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[N, 8]") && err.contains("[2, 6]"), "{err}");
    let err = norm
        .forward(Tensor::<1>::ones([8], &device))
        .unwrap_err()
        .to_string();
    assert!(err.contains("[8]"), "{err}");

    let mask = prefix_mask(&[5, 5, 5], 5, &device);
    let err = norm
        .forward_sequence(Tensor::ones([2, 5, 8], &device), Some(mask))
        .unwrap_err()
        .to_string();
    assert!(err.contains("[3, 5]") && err.contains("[2, 5, 8]"), "{err}");
}

#[test]
fn per_step_batch_norm_errors() {
    let device = train_device();
    let norm = BatchNormConfig::default()
        .with_per_step(Some(4))
        .init(3, &device)
        .unwrap();
    let err = norm
        .forward(Tensor::<2>::ones([5, 3], &device))
        .unwrap_err();
    assert!(matches!(err, NormError::NeedsTimeAxis { .. }), "{err}");
    let err = norm
        .forward_sequence(Tensor::ones([5, 6, 3], &device), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("time step 5") && err.contains("per_step = 4"),
        "{err}"
    );
    let err = norm
        .forward_step(Tensor::ones([5, 3], &device), 4, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("time step 4"), "{err}");
}

#[test]
fn channels_per_group_gives_each_width_its_own_number_of_groups() {
    let config: NormConfig =
        serde_json::from_str(r#"{"kind": "group", "channels_per_group": 4}"#).unwrap();
    for (width, groups) in [(8, 2), (16, 4), (32, 8)] {
        let layer = config.init(width, &device()).unwrap();
        assert_eq!(
            layer.describe(),
            format!("GroupNorm({width} features, {groups} groups)")
        );
        // The same numbers as a layer given that many groups.
        let x = Tensor::<3>::random(
            [2, width, 5],
            burn::tensor::Distribution::Default,
            &device(),
        );
        let same = NormConfig::Group(GroupNormConfig::new(groups))
            .init(width, &device())
            .unwrap();
        let diff = (layer.forward(x.clone()).unwrap() - same.forward(x).unwrap())
            .abs()
            .max()
            .into_scalar::<f32>();
        assert_eq!(diff, 0.0);
    }
}
