//! Every network x norm family x placement: shapes, gradients, padding, train vs eval, saving.

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::Gradients;
use normlab_model::*;
use normlab_norm::{NormConfig, NormLayer};

use normlab_testkit::{mask, to_vec as values_of, train_device, values};

fn plain_device() -> Device {
    Device::flex()
}

/// Every norm a recurrent net takes.
fn norms() -> Vec<NormConfig> {
    [
        r#"{"kind": "none"}"#,
        r#"{"kind": "batch"}"#,
        r#"{"kind": "batch", "per_step": 6}"#,
        r#"{"kind": "batch", "ghost_batch": 3}"#,
        r#"{"kind": "layer"}"#,
        r#"{"kind": "group", "groups": 4}"#,
        r#"{"kind": "rms"}"#,
        r#"{"kind": "batch_renorm"}"#,
        r#"{"kind": "online"}"#,
    ]
    .iter()
    .map(|json| serde_json::from_str(json).unwrap())
    .collect()
}

/// The norms that are their own activation: for dense and conv layers only.
fn activation_norms() -> Vec<NormConfig> {
    [
        r#"{"kind": "frn"}"#,
        r#"{"kind": "frn", "learned_epsilon": true}"#,
        r#"{"kind": "evonorm_s0", "groups": 4}"#,
        r#"{"kind": "evonorm_b0"}"#,
    ]
    .iter()
    .map(|json| serde_json::from_str(json).unwrap())
    .collect()
}

fn per_step(norm: &NormConfig) -> bool {
    matches!(norm, NormConfig::Batch(b) if b.per_step.is_some())
}

fn mlp(norm: &NormConfig) -> ModelConfig {
    ModelConfig::Mlp(MlpConfig {
        hidden: vec![16, 8],
        norm: norm.clone(),
        dropout: 0.1,
        ..MlpConfig::default()
    })
}

fn cnn(norm: &NormConfig, head: Head) -> ModelConfig {
    ModelConfig::Cnn(CnnConfig {
        channels: vec![8, 16],
        head,
        norm: norm.clone(),
        ..CnnConfig::default()
    })
}

fn recurrent(norm: &NormConfig, cell: CellKind, placement: Placement) -> RecurrentConfig {
    RecurrentConfig {
        cell,
        hidden: 8,
        layers: 2,
        norm: norm.clone(),
        placement,
        ..RecurrentConfig::default()
    }
}

fn recurrent_configs(norm: &NormConfig) -> Vec<RecurrentConfig> {
    let mut configs = Vec::new();
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        for placement in [Placement::Vertical, Placement::Horizontal, Placement::Sum] {
            if !(cell == CellKind::Gru && placement == Placement::Sum) {
                configs.push(recurrent(norm, cell, placement));
            }
        }
    }
    configs
}

/// Float parameters that should learn, and whether the gradients reached each of them.
struct GradientCheck<'a> {
    grads: &'a Gradients,
    missing: Vec<String>,
    checked: usize,
}

impl ModuleVisitor for GradientCheck<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // Running statistics are float state too, but never trained.
        if !param.is_require_grad() {
            return;
        }
        self.checked += 1;
        match param.val().grad(self.grads) {
            Some(grad) if grad.clone().abs().sum().into_scalar::<f32>() > 0.0 => {}
            _ => self.missing.push(format!("{:?}", param.dims())),
        }
    }
}

fn assert_every_parameter_learns(model: &Model, loss: Tensor<1>, what: &str) {
    let grads = loss.backward();
    let mut check = GradientCheck {
        grads: &grads,
        missing: Vec::new(),
        checked: 0,
    };
    model.visit(&mut check);
    assert!(check.checked > 0, "{what}: no parameters");
    assert!(
        check.missing.is_empty(),
        "{what}: no gradient for parameters {:?}",
        check.missing
    );
}

#[test]
fn dense_and_conv_models_have_the_right_shapes_and_every_parameter_learns() {
    let device = train_device();
    let dense_norms = norms().into_iter().chain(activation_norms());
    for norm in dense_norms.filter(|n| !per_step(n)) {
        let norm = &norm;
        let model = mlp(norm)
            .init(InputShape::Features(12), 5, &device)
            .unwrap();
        let out = model
            .forward(Input::Features(values([6, 12], 1, &device)))
            .unwrap();
        assert_eq!(out.dims(), [6, 5], "mlp {norm:?}");
        assert_every_parameter_learns(&model, out.square().sum(), &format!("mlp {norm:?}"));

        let images = InputShape::Image([1, 8, 8]);
        let model = mlp(norm).init(images, 5, &device).unwrap();
        let out = model
            .forward(Input::Images(values([6, 1, 8, 8], 2, &device)))
            .unwrap();
        assert_eq!(out.dims(), [6, 5], "mlp on images {norm:?}");

        for head in [Head::GlobalAverage, Head::Dense] {
            let model = cnn(norm, head)
                .init(InputShape::Image([1, 8, 8]), 5, &device)
                .unwrap();
            let out = model
                .forward(Input::Images(values([4, 1, 8, 8], 3, &device)))
                .unwrap();
            assert_eq!(out.dims(), [4, 5], "cnn {norm:?} {head:?}");
            assert_every_parameter_learns(&model, out.square().sum(), &format!("cnn {norm:?}"));
        }
    }
    let instance: NormConfig =
        serde_json::from_str(r#"{"kind": "instance", "affine": true}"#).unwrap();
    let model = cnn(&instance, Head::Dense)
        .init(InputShape::Image([1, 8, 8]), 5, &device)
        .unwrap();
    let out = model
        .forward(Input::Images(values([4, 1, 8, 8], 3, &device)))
        .unwrap();
    assert_every_parameter_learns(&model, out.square().sum(), "cnn instance");
}

#[test]
fn a_vgg_style_cnn_normalizes_every_convolution_and_pools_once_per_block() {
    let device = train_device();
    let config = |convs_per_block| {
        ModelConfig::Cnn(CnnConfig {
            channels: vec![4, 8],
            convs_per_block,
            head: Head::GlobalAverage,
            norm: NormConfig::Batch(Default::default()),
            ..CnnConfig::default()
        })
    };
    let model = config(3)
        .init(InputShape::Image([1, 8, 8]), 5, &device)
        .unwrap();
    let Model::Cnn(cnn) = &model else {
        panic!("a cnn config builds a cnn")
    };
    assert_eq!(cnn.convs.len(), 6);
    assert_eq!(cnn.norms.len(), 6);
    let channels: Vec<usize> = cnn.convs.iter().map(|c| c.weight.val().dims()[0]).collect();
    assert_eq!(channels, [4, 4, 4, 8, 8, 8]);
    // Two pools for two blocks, not six: an 8x8 image would not survive six.
    let out = model
        .forward(Input::Images(values([4, 1, 8, 8], 3, &device)))
        .unwrap();
    assert_eq!(out.dims(), [4, 5]);
    assert_every_parameter_learns(&model, out.square().sum(), "vgg-style cnn");

    let err = config(0)
        .init(InputShape::Image([1, 8, 8]), 5, &device)
        .unwrap_err();
    assert!(err.to_string().contains("convs_per_block"), "{err}");
}

#[test]
fn recurrent_models_have_the_right_shapes_and_every_parameter_learns() {
    let device = train_device();
    let x = values([4, 6, 3], 4, &device);
    let lengths = mask(&[6, 4, 5, 6], 6, &device);
    for norm in norms() {
        for config in recurrent_configs(&norm) {
            let what = format!("{:?} {:?} {norm:?}", config.cell, config.placement);
            let model = ModelConfig::Recurrent(config.clone())
                .init(InputShape::Sequence(3), 5, &device)
                .unwrap();
            let input = Input::Sequences {
                values: x.clone(),
                mask: Some(lengths.clone()),
            };
            let out = model.forward(input).unwrap();
            assert_eq!(out.dims(), [4, 5], "{what}");
            assert_every_parameter_learns(&model, out.square().sum(), &what);

            let every_step = RecurrentConfig {
                output: SequenceOutput::EveryStep,
                ..config
            };
            let model = ModelConfig::Recurrent(every_step)
                .init(InputShape::Sequence(3), 7, &device)
                .unwrap();
            let out = model
                .forward(Input::Sequences {
                    values: x.clone(),
                    mask: None,
                })
                .unwrap();
            assert_eq!(out.dims(), [24, 7], "{what} every step");
        }
    }
}

#[test]
fn gradient_flow_measures_the_loss_gradient_at_every_hidden_state() {
    let device = train_device();
    let x = values([3, 7, 2], 5, &device);
    let config = recurrent(&NormConfig::None, CellKind::Rnn, Placement::Horizontal);
    let model = config.init(2, 4, &device).unwrap();
    let forward = || model.forward((x.clone(), None));
    let plain = forward().unwrap();

    let mut instruments = Instruments::none().tapping_gradients();
    let logits = model
        .forward_instrumented((x.clone(), None), &mut instruments)
        .unwrap();
    assert_eq!(
        values_of(logits.clone()),
        values_of(plain.clone()),
        "taps add zero"
    );
    let norms = instruments.gradient_norms(&logits.sum().backward());
    assert_eq!(
        norms.len(),
        7,
        "one norm per step of the last of the two layers"
    );
    assert!(norms.iter().all(|n| n.is_finite() && *n > 0.0), "{norms:?}");
    let mean_norm = |g: Tensor<2>| g.square().sum_dim(1).sqrt().mean().into_scalar::<f32>();
    let close = |a: f32, b: f32| (a - b).abs() < 1e-5 * b.abs().max(1e-6);
    // At the last step the loss `sum(head(h_T))` has gradient `W_head 1` for every sequence.
    let g_last = model
        .head
        .weight
        .val()
        .sum_dim(1)
        .reshape([1, 8])
        .expand([3, 8]);
    assert!(close(norms[6], mean_norm(g_last.clone())), "{norms:?}");
    // One step back: through tanh's derivative and the recurrent weights (`y = x W`).
    let none = &mut Instruments::none();
    let first = model.layers[0].forward(x.clone(), None, none).unwrap();
    let states = model.layers[1].forward(first, None, none).unwrap();
    let h_last = states.slice(s![.., 6, ..]).reshape([3, 8]);
    let g_prev = (g_last * (h_last.square().neg() + 1.0))
        .matmul(model.layers[1].recurrent.weight.val().transpose());
    assert!(close(norms[5], mean_norm(g_prev)), "{norms:?}");

    let after = forward().unwrap();
    assert_eq!(
        plain.into_data(),
        after.into_data(),
        "no taps outside a measurement"
    );
}

#[test]
fn a_padded_sequence_gives_what_the_sequence_alone_gives() {
    let device = train_device();
    let batch = values([3, 6, 3], 5, &device);
    let lengths = mask(&[6, 4, 6], 6, &device);
    for norm in norms() {
        for config in recurrent_configs(&norm) {
            let what = format!("{:?} {:?} {norm:?}", config.cell, config.placement);
            let model = ModelConfig::Recurrent(config)
                .init(InputShape::Sequence(3), 5, &device)
                .unwrap();
            // Train a step so batch norms have running statistics, then compare in eval.
            model
                .forward(Input::Sequences {
                    values: batch.clone(),
                    mask: Some(lengths.clone()),
                })
                .unwrap();
            let eval = model.valid();
            let batch = batch.clone().inner();
            let padded = eval
                .forward(Input::Sequences {
                    values: batch.clone(),
                    mask: Some(lengths.clone().inner()),
                })
                .unwrap()
                .slice(s![1..2]);
            let alone = batch.slice(s![1..2, 0..4, ..]);
            let alone = eval
                .forward(Input::Sequences {
                    values: alone,
                    mask: None,
                })
                .unwrap();
            // Only rounding may differ (a batch of 3 and one of 1 go through differently blocked
            // products), amplified where a group's spread is small; padding that leaked into
            // the real steps would show at the size of the outputs.
            let scale = alone.clone().abs().max().into_scalar::<f32>().max(1.0);
            let diff = (padded - alone).abs().max().into_scalar::<f32>();
            assert!(
                diff <= 1e-4 * scale,
                "{what}: padded and alone differ by {diff} (outputs up to {scale})"
            );
        }
    }
}

#[test]
fn per_step_batch_norm_keeps_a_statistic_per_step_and_runs_longer_sequences() {
    let device = train_device();
    let norm: NormConfig =
        serde_json::from_str(r#"{"kind": "batch", "per_step": 8, "gamma_init": 0.1}"#).unwrap();
    let model = recurrent(&norm, CellKind::Lstm, Placement::Horizontal)
        .init(3, 5, &device)
        .unwrap();
    model
        .forward((values([4, 5, 3], 6, &device), None))
        .unwrap();
    let layer = &model.layers[0];
    let bn = match &layer.recurrent_norm {
        Some(bn @ normlab_norm::Norm::Batch(_)) => bn,
        other => panic!("expected batch norm, got {other:?}"),
    };
    let running = bn.running_stats().unwrap();
    let batches: Vec<f32> = running.batches().into_data().iter::<f32>().collect();
    assert_eq!(batches, [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(running.mean().dims(), [8, 32]);
    // gamma starts where the config says, recurrent BN's 0.1 here.
    let gamma: Vec<f32> = bn
        .affine()
        .unwrap()
        .gamma()
        .into_data()
        .iter::<f32>()
        .collect();
    assert!(gamma.iter().all(|g| (g - 0.1).abs() < 1e-7));
    // A 12-step test sequence, longer than per_step and than training, runs in eval.
    let eval = model.valid();
    let out = eval
        .forward((values([2, 12, 3], 7, &plain_device()), None))
        .unwrap();
    assert_eq!(out.dims(), [2, 5]);
    // Training on a sequence longer than per_step is a clear error naming the layer.
    let err = model
        .forward((values([4, 9, 3], 8, &device), None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Lstm layer 1") && err.contains("per_step = 8"),
        "{err}"
    );
}

#[test]
fn batch_norm_eval_output_does_not_depend_on_the_batch_but_train_output_does() {
    let device = train_device();
    let norm: NormConfig = "batch".parse().unwrap();
    let model = cnn(&norm, Head::GlobalAverage)
        .init(InputShape::Image([1, 8, 8]), 5, &device)
        .unwrap();
    let batch = values([6, 1, 8, 8], 9, &device);
    let first =
        |model: &Model, x: Tensor<4>| model.forward(Input::Images(x)).unwrap().slice(s![0..1]);
    let in_batch = first(&model, batch.clone());
    let smaller = first(&model, batch.clone().slice(s![0..3]));
    let train_diff = (in_batch - smaller).abs().max().into_scalar::<f32>();
    assert!(
        train_diff > 1e-3,
        "training output must depend on the batch"
    );

    let eval = model.valid();
    let batch = batch.inner();
    let in_batch = first(&eval, batch.clone());
    let alone = first(&eval, batch.slice(s![0..1]));
    let eval_diff = (in_batch - alone).abs().max().into_scalar::<f32>();
    assert!(
        eval_diff < 1e-6,
        "eval output depends on the batch by {eval_diff}"
    );
}

#[test]
fn a_saved_model_loads_with_identical_outputs() {
    let device = train_device();
    let norm: NormConfig = "batch".parse().unwrap();
    let config = ModelConfig::Recurrent(recurrent(&norm, CellKind::Gru, Placement::Horizontal));
    let model = config.init(InputShape::Sequence(3), 5, &device).unwrap();
    let x = values([4, 5, 3], 10, &device);
    model
        .forward(Input::Sequences {
            values: x.clone(),
            mask: None,
        })
        .unwrap();
    let path = std::env::temp_dir().join(format!("normlab-model-{}", std::process::id()));
    model.clone().save_file(&path).unwrap();

    let fresh = config.init(InputShape::Sequence(3), 5, &device).unwrap();
    let loaded = fresh.load_file(&path);
    let eval_x = x.inner();
    let run = |m: &Model| {
        m.valid()
            .forward(Input::Sequences {
                values: eval_x.clone(),
                mask: None,
            })
            .unwrap()
            .into_data()
    };
    assert_eq!(run(&model), run(&loaded));
    let _ = std::fs::remove_file(path.with_extension("bpk"));
}

#[test]
fn the_probe_sees_every_norm_site_before_and_after() {
    let device = train_device();
    let norm: NormConfig = "batch".parse().unwrap();
    let model = mlp(&norm)
        .init(InputShape::Features(12), 5, &device)
        .unwrap();
    let x = values([32, 12], 11, &device) * 3.0 + 5.0;
    let mut instruments = Instruments::none().probing(2);
    model
        .forward_instrumented(Input::Features(x), &mut instruments)
        .unwrap();
    let sites = instruments.take_probe().expect("probing");
    let names: Vec<&str> = sites.iter().map(|s| s.site.as_str()).collect();
    assert_eq!(names, ["hidden 1", "hidden 2"]);
    for site in &sites {
        assert_eq!(site.after.percentiles.len(), 2);
        assert!(
            site.after.mean.abs() < 1e-4,
            "batch norm output is centred: {site:?}"
        );
        assert!((site.after.std - 1.0).abs() < 1e-2, "and scaled: {site:?}");
        let [p15, p50, p85] = site.before.percentiles[0];
        assert!(p15 <= p50 && p50 <= p85);
    }
    // What was taken is gone; without probing nothing is recorded.
    assert_eq!(instruments.take_probe(), Some(Vec::new()));
    assert_eq!(Instruments::none().take_probe(), None);
}

#[test]
fn configs_read_from_toml_and_bad_ones_say_where() {
    let config: ModelConfig = toml::from_str(
        r#"
        kind = "recurrent"
        cell = "gru"
        hidden = 32
        placement = "vertical"
        norm = { kind = "batch", per_step = 30 }
        "#,
    )
    .unwrap();
    let ModelConfig::Recurrent(recurrent) = &config else {
        panic!("{config:?}")
    };
    assert_eq!(
        (recurrent.cell, recurrent.hidden, recurrent.placement),
        (CellKind::Gru, 32, Placement::Vertical)
    );

    let err = toml::from_str::<ModelConfig>("kind = \"mlp\"\nhiden = [3]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown field `hiden`") && err.contains("`hidden`"),
        "{err}"
    );

    let bad_groups: NormConfig = serde_json::from_str(r#"{"kind": "group", "groups": 3}"#).unwrap();
    let err = mlp(&bad_groups)
        .init(InputShape::Features(4), 2, &plain_device())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("hidden 1: invalid norm config: `groups` = 3"),
        "{err}"
    );

    let err = cnn(&NormConfig::None, Head::Dense)
        .init(InputShape::Features(4), 2, &plain_device())
        .unwrap_err();
    assert!(err.to_string().contains("cnn expects image input"), "{err}");
    let err = ModelConfig::Cnn(CnnConfig {
        channels: vec![4; 4],
        ..CnnConfig::default()
    })
    .init(InputShape::Image([1, 8, 8]), 2, &plain_device())
    .unwrap_err();
    assert!(err.to_string().contains("shrink a 8x8 image"), "{err}");
}

#[test]
fn a_batch_of_one_in_training_names_the_layer() {
    let device = train_device();
    let model = mlp(&"batch".parse().unwrap())
        .init(InputShape::Features(4), 2, &device)
        .unwrap();
    let err = model
        .forward(Input::Features(values([1, 4], 12, &device)))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("hidden 1: BatchNorm(16 features)"), "{err}");
}

#[test]
fn errors_inside_a_recurrent_layer_name_the_norm_site() {
    let device = train_device();
    // 16 groups divide the 32 gate pre-activations but not the 8 cells of the LSTM.
    let norm: NormConfig = serde_json::from_str(r#"{"kind": "group", "groups": 16}"#).unwrap();
    let err = recurrent(&norm, CellKind::Lstm, Placement::Horizontal)
        .init(3, 5, &device)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("Lstm layer 1 cell: "), "{err}");
    // Instance norm has one value per (sample, channel) at a single step: the first norm the
    // step reaches, on the input term, says so.
    let norm: NormConfig = "instance".parse().unwrap();
    let model = recurrent(&norm, CellKind::Gru, Placement::Horizontal)
        .init(3, 5, &device)
        .unwrap();
    let err = model
        .forward((values([4, 5, 3], 6, &device), None))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("Gru layer 1 input term: "), "{err}");
}

#[test]
fn norms_that_are_activations_replace_the_activation_and_stay_out_of_recurrences() {
    let device = train_device();
    for norm in activation_norms() {
        let config = ModelConfig::Mlp(MlpConfig {
            hidden: vec![8],
            activation: Activation::Tanh,
            norm: norm.clone(),
            ..MlpConfig::default()
        });
        let Model::Mlp(model) = config.init(InputShape::Features(5), 3, &device).unwrap() else {
            panic!("an mlp");
        };
        let x = values([6, 5], 21, &device);
        let hidden = model.norms[0]
            .forward(model.layers[0].forward(x.clone()))
            .unwrap();
        let expected = model.head.forward(hidden);
        let out = model.forward(x).unwrap();
        let diff = (out - expected).abs().max().into_scalar::<f32>();
        assert!(
            diff < 1e-6,
            "{norm:?}: a tanh after the norm's own activation ({diff})"
        );

        let err = ModelConfig::Recurrent(recurrent(&norm, CellKind::Lstm, Placement::Horizontal))
            .init(InputShape::Sequence(3), 5, &device)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`norm`") && err.contains("activation of its own"),
            "{err}"
        );
    }
}

#[test]
fn weight_standardization_standardizes_every_filter_and_still_learns() {
    let device = train_device();
    let config = ModelConfig::Cnn(CnnConfig {
        channels: vec![4],
        pool: Pool::None,
        weight_standardization: true,
        ..CnnConfig::default()
    });
    let model = config
        .init(InputShape::Image([2, 5, 5]), 3, &device)
        .unwrap();
    let Model::Cnn(cnn) = &model else {
        panic!("a cnn")
    };
    // The network by hand: each filter standardized over its 2 x 3 x 3 weights.
    let x = values([2, 2, 5, 5], 22, &device);
    let w = cnn.convs[0].weight.val();
    let mean = w.clone().mean_dims(&[1, 2, 3]);
    let var = (w.clone() - mean.clone()).square().mean_dims(&[1, 2, 3]);
    let standardized = (w - mean) / (var + 1e-5).sqrt();
    let maps = burn::tensor::module::conv2d(
        x.clone(),
        standardized,
        cnn.convs[0].bias.as_ref().map(|b| b.val()),
        burn::tensor::ops::ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
    );
    let features = burn::tensor::activation::relu(maps)
        .mean_dims(&[2, 3])
        .flatten::<2>(1, 3);
    let expected = cnn.head.forward(features);
    let out = model.forward(Input::Images(x)).unwrap();
    let diff = (out.clone() - expected).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-5, "standardized conv differs by {diff}");
    assert_every_parameter_learns(&model, out.square().sum(), "cnn with standardized weights");
}

/// Trains a few steps so batch norms have running statistics, then returns the model.
fn trained(config: ModelConfig, input: InputShape, batch: impl Fn(u64) -> Input) -> Model {
    let device = train_device();
    let model = config.init(input, 3, &device).unwrap();
    for seed in 0..4 {
        model.forward(batch(seed)).unwrap();
    }
    model
}

#[test]
fn folded_and_frozen_models_compute_what_the_eval_model_computes() {
    let device = train_device();
    let batch_norm: NormConfig = "batch".parse().unwrap();
    let dense = |seed| Input::Features(values([8, 5], 30 + seed, &device));
    let images = |seed| Input::Images(values([4, 1, 6, 6], 40 + seed, &device));
    // No dropout: the frozen model is compared in training mode.
    let mlp = ModelConfig::Mlp(MlpConfig {
        hidden: vec![16, 8],
        norm: batch_norm.clone(),
        ..MlpConfig::default()
    });
    let models = [
        trained(mlp, InputShape::Features(5), dense),
        trained(
            ModelConfig::Cnn(CnnConfig {
                channels: vec![4, 6],
                norm: batch_norm.clone(),
                weight_standardization: true,
                ..CnnConfig::default()
            }),
            InputShape::Image([1, 6, 6]),
            images,
        ),
    ];
    let plain = plain_device();
    let inputs = [
        Input::Features(values([3, 5], 50, &plain)),
        Input::Images(values([3, 1, 6, 6], 51, &plain)),
    ];
    for (model, input) in models.into_iter().zip(inputs) {
        let eval = model.valid().forward(input.clone()).unwrap();
        let folded = model.fold_batch_norms();
        let norms = match &folded {
            Model::Mlp(m) => &m.norms,
            Model::Cnn(m) => &m.norms,
            Model::Recurrent(_) | Model::Resnet(_) => unreachable!(),
        };
        assert!(
            norms
                .iter()
                .all(|n| matches!(n, normlab_norm::Norm::None(_)))
        );
        let out = folded.forward(input.clone()).unwrap();
        let diff = (out - eval.clone()).abs().max().into_scalar::<f32>();
        let scale = eval.clone().abs().max().into_scalar::<f32>();
        assert!(diff <= 1e-5 * scale.max(1.0), "folded differs by {diff}");

        let frozen = model.frozen().unwrap();
        let train_input = match input {
            Input::Features(x) => Input::Features(x.autodiff()),
            Input::Images(x) => Input::Images(x.autodiff()),
            other => other,
        };
        let out = frozen.forward(train_input).unwrap().inner();
        let diff = (out - eval).abs().max().into_scalar::<f32>();
        assert!(diff <= 1e-5 * scale.max(1.0), "frozen differs by {diff}");
    }
}

/// A norm after the activation has the activation between it and the layer: folding must leave
/// it in place (the standardized weights are still folded) and compute what the eval model does.
#[test]
fn folding_leaves_a_norm_after_the_activation_in_place() {
    let device = train_device();
    let batch_norm: NormConfig = "batch".parse().unwrap();
    let after = NormPosition::AfterActivation;
    let mlp = ModelConfig::Mlp(MlpConfig {
        hidden: vec![16, 8],
        norm: batch_norm.clone(),
        norm_position: after,
        weight_standardization: true,
        ..MlpConfig::default()
    });
    let cnn = ModelConfig::Cnn(CnnConfig {
        channels: vec![4, 6],
        norm: batch_norm,
        norm_position: after,
        weight_standardization: true,
        ..CnnConfig::default()
    });
    let dense = |seed| Input::Features(values([8, 5], 60 + seed, &device));
    let images = |seed| Input::Images(values([4, 1, 6, 6], 70 + seed, &device));
    let models = [
        trained(mlp, InputShape::Features(5), dense),
        trained(cnn, InputShape::Image([1, 6, 6]), images),
    ];
    let plain = plain_device();
    let inputs = [
        Input::Features(values([3, 5], 80, &plain)),
        Input::Images(values([3, 1, 6, 6], 81, &plain)),
    ];
    for (model, input) in models.into_iter().zip(inputs) {
        let eval = model.valid().forward(input.clone()).unwrap();
        let folded = model.fold_batch_norms();
        let (norms, layout) = match &folded {
            Model::Mlp(m) => (&m.norms, m.layout),
            Model::Cnn(m) => (&m.norms, m.layout),
            Model::Recurrent(_) | Model::Resnet(_) => unreachable!(),
        };
        assert!(
            norms
                .iter()
                .all(|n| matches!(n, normlab_norm::Norm::Batch(_)))
        );
        assert!(
            !layout.weight_standardization,
            "the weights are held standardized"
        );
        let out = folded.forward(input).unwrap();
        let diff = (out - eval.clone()).abs().max().into_scalar::<f32>();
        let scale = eval.abs().max().into_scalar::<f32>();
        assert!(diff <= 1e-5 * scale.max(1.0), "folded differs by {diff}");
    }
}

#[test]
fn an_input_with_no_values_is_an_error_not_a_crash() {
    let device = train_device();
    let norm = NormConfig::Layer(Default::default());
    let dense = mlp(&norm)
        .init(InputShape::Features(4), 3, &device)
        .unwrap();
    let conv = cnn(&norm, Head::GlobalAverage)
        .init(InputShape::Image([1, 8, 8]), 3, &device)
        .unwrap();
    let config = ModelConfig::Recurrent(recurrent(&norm, CellKind::Lstm, Placement::Horizontal));
    let rnn = config.init(InputShape::Sequence(4), 3, &device).unwrap();
    let cases = [
        (&dense, Input::Features(values([0, 4], 0, &device))),
        (&conv, Input::Images(values([0, 1, 8, 8], 0, &device))),
        (&conv, Input::Images(values([2, 1, 0, 8], 0, &device))),
        (
            &rnn,
            Input::Sequences {
                values: values([0, 5, 4], 0, &device),
                mask: None,
            },
        ),
        (
            &rnn,
            Input::Sequences {
                values: values([2, 0, 4], 0, &device),
                mask: None,
            },
        ),
    ];
    for (model, input) in cases {
        let shape = input.shape();
        match model.forward(input) {
            Err(ModelError::EmptyInput { shape: got }) => assert_eq!(got, shape),
            other => panic!("{shape:?}: {other:?}"),
        }
    }
}

#[test]
fn the_sum_placement_normalizes_the_whole_pre_activation_at_every_step() {
    let device = train_device();
    let norm: NormConfig = serde_json::from_str(r#"{"kind": "batch", "per_step": 5}"#).unwrap();
    let config = RecurrentConfig {
        cell: CellKind::Rnn,
        hidden: 6,
        norm,
        placement: Placement::Sum,
        ..RecurrentConfig::default()
    };
    let model = config.init(2, 3, &device).unwrap();
    let layer = &model.layers[0];
    assert!(layer.recurrent_norm.is_none() && layer.cell_norm.is_none());
    // Batch norm on the sum with gamma 1 and beta 0: the pre-activation of every unit has mean
    // 0 over the batch at every step, so the bias (0) and tanh keep each h_t's mean over the
    // batch at 0 where tanh is odd: check the first step directly.
    let x = values([8, 5, 2], 3, &device);
    let states = layer
        .forward(x.clone(), None, &mut Instruments::none())
        .unwrap();
    let first = states.slice(s![.., 0, ..]).reshape([8, 6]);
    let pre = layer.input.forward(x.slice(s![.., 0, ..]).reshape([8, 2]));
    let mean = pre.clone().mean_dim(0);
    let var = (pre.clone() - mean.clone()).square().mean_dim(0);
    let expected = ((pre - mean) / (var + 1e-5).sqrt()).tanh();
    let error = normlab_testkit::max_relative_error(first, expected, 1e-6);
    assert!(error < 1e-5, "off by {error}");

    let gru = RecurrentConfig {
        cell: CellKind::Gru,
        placement: Placement::Sum,
        ..RecurrentConfig::default()
    };
    let err = gru.init(2, 3, &device).unwrap_err().to_string();
    assert!(err.contains("`placement`") && err.contains("GRU"), "{err}");
}

#[test]
fn identity_and_orthogonal_init_start_the_recurrence_where_recurrent_bn_did() {
    let device = plain_device();
    for (cell, gates) in [(CellKind::Rnn, 1), (CellKind::Lstm, 4)] {
        for inputs in [1, 3, 20] {
            let config = RecurrentConfig {
                cell,
                hidden: 8,
                weight_init: RecurrentInit::IdentityOrthogonal,
                ..RecurrentConfig::default()
            };
            let model = config.init(inputs, 3, &device).unwrap();
            let layer = &model.layers[0];
            // Wh: one identity per gate.
            let wh = layer.recurrent.weight.val();
            let eye = Tensor::<2>::eye(8, &device);
            assert_eq!(values_of(wh), values_of(Tensor::cat(vec![eye; gates], 1)));
            // Wx [inputs, 8 * gates]: orthonormal rows, or columns where it has more rows.
            let wx = layer.input.weight.val();
            let (gram, size) = match inputs <= 8 * gates {
                true => (wx.clone().matmul(wx.transpose()), inputs),
                false => (wx.clone().transpose().matmul(wx), 8 * gates),
            };
            let identity = Tensor::<2>::eye(size, &device);
            let error = normlab_testkit::max_relative_error(gram, identity, 1.0);
            assert!(
                error < 1e-5,
                "{cell:?} with {inputs} inputs: W W^T off by {error}"
            );
        }
    }
}

#[test]
fn a_model_config_reads_from_its_options_alone_as_from_its_tagged_form() {
    for kind in ModelConfig::KINDS {
        let tagged: ModelConfig =
            serde_json::from_value(serde_json::json!({ "kind": kind })).unwrap();
        assert_eq!(tagged.kind().name(), kind);
        let options = serde_json::json!({});
        assert_eq!(ModelConfig::from_options(kind, options).unwrap(), tagged);
    }
    let options = serde_json::json!({ "hidden": [16], "norm": "layer" });
    let config = ModelConfig::from_options("mlp", options).unwrap();
    assert_eq!(config.describe(), "MLP 16");
    assert_eq!(config.norm().kind(), "layer");
    for (kind, options, why) in [
        ("mlp", r#"{"channels": [4]}"#, "unknown field `channels`"),
        ("cnn", r#"{"channels": 4}"#, "invalid type: integer `4`"),
        ("transformer", "{}", "unknown variant `transformer`"),
    ] {
        let options: serde_json::Value = serde_json::from_str(options).unwrap();
        let err = ModelConfig::from_options(kind, options).unwrap_err();
        assert!(err.to_string().contains(why), "{kind}: {err}");
    }
}
