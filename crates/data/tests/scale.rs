use normlab_data::{
    DataError, DataRoot, ScaleKind, ScaleScope, Scaler, ScalerConfig, split_indices,
};

fn config(kind: ScaleKind, scope: ScaleScope) -> ScalerConfig {
    ScalerConfig { kind, scope }
}

/// Rows of 3 columns: the first spans 0..10, the second 100..300, the third is constant.
const TRAIN: [f32; 9] = [0.0, 100.0, 5.0, 10.0, 300.0, 5.0, 5.0, 200.0, 5.0];

fn column(data: &[f32], j: usize, width: usize) -> Vec<f32> {
    data.iter().skip(j).step_by(width).copied().collect()
}

fn assert_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} != {b:?}");
    }
}

#[test]
fn min_max_maps_the_training_range_to_unit_interval() {
    let scaler = Scaler::fit(config(ScaleKind::MinMax, ScaleScope::PerFeature), &TRAIN, 3).unwrap();
    let mut train = TRAIN;
    scaler.transform(&mut train).unwrap();
    assert_close(&column(&train, 0, 3), &[0.0, 1.0, 0.5], 1e-6);
    assert_close(&column(&train, 1, 3), &[0.0, 1.0, 0.5], 1e-6);
    // A constant column has range 0: it is shifted to 0, not divided by 0.
    assert_eq!(column(&train, 2, 3), [0.0, 0.0, 0.0]);

    // Other data uses the training numbers, so it may land outside [0, 1].
    let mut test = [20.0, 0.0, 6.0];
    scaler.transform(&mut test).unwrap();
    assert_close(&test, &[2.0, -0.5, 1.0], 1e-6);
}

#[test]
fn z_score_gives_zero_mean_unit_population_std() {
    let scaler = Scaler::fit(config(ScaleKind::ZScore, ScaleScope::PerFeature), &TRAIN, 3).unwrap();
    let mut train = TRAIN;
    scaler.transform(&mut train).unwrap();
    // Column 0 is 0, 10, 5: mean 5, population std sqrt(50 / 3).
    let std = (50.0f32 / 3.0).sqrt();
    assert_close(&column(&train, 0, 3), &[-5.0 / std, 5.0 / std, 0.0], 1e-6);
    for j in 0..2 {
        let col = column(&train, j, 3);
        let mean = col.iter().sum::<f32>() / 3.0;
        let var = col.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 3.0;
        assert!(
            mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5,
            "column {j}: {col:?}"
        );
    }
    assert_eq!(column(&train, 2, 3), [0.0, 0.0, 0.0]);
    assert!(train.iter().all(|x| x.is_finite()));
}

#[test]
fn global_and_per_feature_differ() {
    let per = Scaler::fit(config(ScaleKind::MinMax, ScaleScope::PerFeature), &TRAIN, 3).unwrap();
    let global = Scaler::fit(config(ScaleKind::MinMax, ScaleScope::Global), &TRAIN, 3).unwrap();
    let (mut a, mut b) = (TRAIN, TRAIN);
    per.transform(&mut a).unwrap();
    global.transform(&mut b).unwrap();
    assert_ne!(a, b);
    // Global: one range, 0..300, for every column.
    assert_close(&b, &TRAIN.map(|x| x / 300.0), 1e-6);
}

#[test]
fn inverse_transform_round_trips() {
    for kind in [ScaleKind::None, ScaleKind::MinMax, ScaleKind::ZScore] {
        for scope in [ScaleScope::PerFeature, ScaleScope::Global] {
            let scaler = Scaler::fit(config(kind, scope), &TRAIN, 3).unwrap();
            let mut data = [3.0, 150.0, 5.0, -7.0, 1000.0, 4.0];
            scaler.transform(&mut data).unwrap();
            scaler.inverse_transform(&mut data).unwrap();
            assert_close(&data, &[3.0, 150.0, 5.0, -7.0, 1000.0, 4.0], 1e-3);
        }
    }
}

#[test]
fn none_leaves_values_alone() {
    let scaler = Scaler::fit(config(ScaleKind::None, ScaleScope::Global), &TRAIN, 3).unwrap();
    let mut data = TRAIN;
    scaler.transform(&mut data).unwrap();
    assert_eq!(data, TRAIN);
}

#[test]
fn fitted_on_digits_training_part_only() {
    let set = DataRoot::default().digits().unwrap();
    let splits = split_indices(set.len(), 0.0, 0.3, 11).unwrap();
    let width = set.example_len();
    let scaler = Scaler::fit(
        config(ScaleKind::MinMax, ScaleScope::PerFeature),
        &set.gather(&splits.train),
        width,
    )
    .unwrap();

    let mut train = set.gather(&splits.train);
    scaler.transform(&mut train).unwrap();
    assert!(train.iter().all(|x| (0.0..=1.0).contains(x)));
    // The corner pixels are 0 in nearly every image: constant columns must stay finite.
    let mut test = set.gather(&splits.test);
    scaler.transform(&mut test).unwrap();
    assert!(test.iter().all(|x| x.is_finite()));
    // Fitted on train only, some test pixels fall outside the training range.
    assert!(test.iter().any(|x| !(0.0..=1.0).contains(x)));
}

#[test]
fn config_and_scaler_serialize() {
    let cfg: ScalerConfig =
        serde_json::from_str(r#"{"kind": "z_score", "scope": "per_feature"}"#).unwrap();
    assert_eq!(cfg, config(ScaleKind::ZScore, ScaleScope::PerFeature));
    let cfg: ScalerConfig =
        serde_json::from_str(r#"{"kind": "min_max", "scope": "global"}"#).unwrap();
    assert_eq!(cfg, config(ScaleKind::MinMax, ScaleScope::Global));
    assert!(
        serde_json::from_str::<ScalerConfig>(r#"{"kind": "none", "scope": "global", "eps": 1}"#)
            .is_err()
    );
    assert!(
        serde_json::from_str::<ScalerConfig>(r#"{"kind": "ZScore", "scope": "global"}"#).is_err()
    );

    let scaler = Scaler::fit(cfg, &TRAIN, 3).unwrap();
    let json = serde_json::to_string(&scaler).unwrap();
    let loaded: Scaler = serde_json::from_str(&json).unwrap();
    assert_eq!(loaded, scaler);
    assert_eq!((loaded.config(), loaded.width()), (cfg, 3));
}

#[test]
fn inconsistent_saved_scaler_is_rejected() {
    let config = r#""config": {"kind": "z_score", "scope": "per_feature"}"#;
    for body in [
        r#""width": 2, "shift": [0.0], "divisor": [1.0, 1.0]"#,
        r#""width": 0, "shift": [], "divisor": []"#,
        r#""width": 1, "shift": [0.0], "divisor": [0.0]"#,
    ] {
        let json = format!("{{{config}, {body}}}");
        let err = serde_json::from_str::<Scaler>(&json).unwrap_err();
        assert!(err.to_string().contains("saved scaler"), "{err}");
    }
}

#[test]
fn bad_shapes_are_rejected() {
    let cfg = config(ScaleKind::ZScore, ScaleScope::Global);
    for (rows, width) in [(&TRAIN[..], 0), (&TRAIN[..8], 3), (&[][..], 3)] {
        let err = Scaler::fit(cfg, rows, width).unwrap_err();
        assert!(matches!(err, DataError::InvalidArgument { .. }), "{err:?}");
    }
    let err = Scaler::fit(cfg, &[1.0, f32::NAN], 1).unwrap_err();
    assert!(err.to_string().contains("value 1 is NaN"), "{err}");

    let scaler = Scaler::fit(cfg, &TRAIN, 3).unwrap();
    let err = scaler.transform(&mut [1.0, 2.0]).unwrap_err();
    assert!(
        err.to_string().contains("2 values are not whole rows of 3"),
        "{err}"
    );
}
