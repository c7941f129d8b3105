//! The residual network: its structure, its shortcuts computed by hand, every norm in every slot,
//! zero-initialized last gammas, folding, freezing and PreciseBN.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use normlab_model::*;
use normlab_norm::{Norm, NormLayer};

use normlab_testkit::{train_device, values};

fn resnet(norm: &str, widths: &[usize], blocks: usize, shortcut: Shortcut) -> ResnetConfig {
    ResnetConfig {
        widths: widths.to_vec(),
        blocks,
        shortcut,
        norm: norm.parse().unwrap(),
        ..ResnetConfig::default()
    }
}

fn build(config: ResnetConfig, image: [usize; 3], device: &Device) -> Resnet {
    match ModelConfig::Resnet(config)
        .init(InputShape::Image(image), 5, device)
        .unwrap()
    {
        Model::Resnet(net) => net,
        _ => panic!("a resnet config builds a resnet"),
    }
}

fn max_difference(a: Tensor<2>, b: Tensor<2>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

#[test]
fn resnet_20_has_19_normalized_convolutions_in_three_stages() {
    let device = train_device();
    let config = resnet("batch", &[16, 32, 64], 3, Shortcut::ZeroPad);
    assert_eq!(config.depth(), 20);
    assert_eq!(
        ModelConfig::Resnet(config.clone()).describe(),
        "ResNet-20 16/32/64"
    );
    let mut net = build(config, [3, 32, 32], &device);
    assert_eq!(net.blocks.len(), 9);
    assert_eq!(net.norms_mut().count(), 19, "the stem and two per block");
    let strides: Vec<usize> = net.blocks.iter().map(|b| b.stride).collect();
    assert_eq!(strides, [1, 1, 1, 2, 1, 1, 2, 1, 1]);
    let widths: Vec<usize> = net.blocks.iter().map(|b| b.widen).collect();
    assert_eq!(widths, [0, 0, 0, 16, 0, 0, 32, 0, 0]);

    let mut instruments = Instruments::none().probing(1);
    let images = values([2, 3, 32, 32], 1, &device);
    let logits = net.forward_instrumented(images, &mut instruments).unwrap();
    assert_eq!(logits.dims(), [2, 5]);
    let sites = instruments.take_probe().unwrap();
    let names: Vec<&str> = sites.iter().map(|s| s.site.as_str()).collect();
    assert_eq!(names.len(), 19);
    assert_eq!(
        names[..4],
        [
            "stem",
            "stage 1 block 1 conv 1",
            "stage 1 block 1 conv 2",
            "stage 1 block 2 conv 1"
        ]
    );
    assert_eq!(names[18], "stage 3 block 3 conv 2");

    let projected = resnet("batch", &[16, 32, 64], 3, Shortcut::Projection);
    let mut net = build(projected, [3, 32, 32], &device);
    assert_eq!(net.norms_mut().count(), 21, "and one per projection");
}

#[test]
fn every_norm_fits_every_slot_and_every_parameter_learns() {
    let device = train_device();
    let norms = [
        "none",
        "batch",
        "layer",
        "instance",
        "rms",
        "batch_renorm",
        "frn",
        "online",
    ];
    for norm in norms {
        for shortcut in [Shortcut::ZeroPad, Shortcut::Projection] {
            let net = build(resnet(norm, &[4, 8], 1, shortcut), [1, 8, 8], &device);
            let out = net.forward(values([4, 1, 8, 8], 2, &device)).unwrap();
            assert_eq!(out.dims(), [4, 5], "{norm} {shortcut:?}");
            let grads = out.square().sum().backward();
            let weight = |conv_norm: &ConvNorm| conv_norm.conv.weight.val();
            let block = &net.blocks[1];
            let mut learning = vec![
                weight(&net.stem),
                weight(&block.first),
                weight(&block.second),
            ];
            learning.extend(block.projection.as_ref().map(weight));
            for w in learning {
                let grad = w.grad(&grads).expect("a gradient");
                assert!(
                    grad.abs().sum().into_scalar::<f32>() > 0.0,
                    "{norm} {shortcut:?}"
                );
            }
        }
    }
    let config = ResnetConfig {
        norm: serde_json::from_str(r#"{"kind": "group", "groups": 2}"#).unwrap(),
        ..resnet("none", &[4, 8], 1, Shortcut::ZeroPad)
    };
    let net = build(config, [1, 8, 8], &device);
    assert_eq!(
        net.forward(values([2, 1, 8, 8], 2, &device))
            .unwrap()
            .dims(),
        [2, 5]
    );
}

/// `conv(x)` with padding `kernel / 2`, no bias.
fn by_hand(x: Tensor<4>, conv: &ConvNorm, stride: usize) -> Tensor<4> {
    let weight = conv.conv.weight.val();
    let pad = weight.dims()[2] / 2;
    conv2d(
        x,
        weight,
        None,
        ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1),
    )
}

#[test]
fn blocks_add_their_input_and_the_zero_padded_shortcut_subsamples_and_widens() {
    let device = train_device();
    let net = build(
        resnet("none", &[2, 4], 1, Shortcut::ZeroPad),
        [1, 5, 5],
        &device,
    );
    let x = values([3, 1, 5, 5], 7, &device);

    let stem = relu(by_hand(x.clone(), &net.stem, 1));
    let first = &net.blocks[0];
    let residual = by_hand(
        relu(by_hand(stem.clone(), &first.first, 1)),
        &first.second,
        1,
    );
    let h = relu(residual + stem);
    let second = &net.blocks[1];
    let residual = by_hand(
        relu(by_hand(h.clone(), &second.first, 2)),
        &second.second,
        1,
    );
    // Pixels (0, 0), (0, 2), (0, 4), (2, 0), ... of each of the 2 channels, then 2 zero
    // channels split one before and one after: a 3x3 map from 5x5.
    let [n, _, _, _] = h.dims();
    let picked: Vec<Tensor<4>> = [0, 2, 4]
        .iter()
        .map(|&row| {
            let columns: Vec<Tensor<4>> = [0, 2, 4]
                .iter()
                .map(|&col| h.clone().slice([0..n, 0..2, row..row + 1, col..col + 1]))
                .collect();
            Tensor::cat(columns, 3)
        })
        .collect();
    let zeros = Tensor::<4>::zeros([n, 1, 3, 3], &device);
    let shortcut = Tensor::cat(vec![zeros.clone(), Tensor::cat(picked, 2), zeros], 1);
    let h = relu(residual + shortcut);
    let expected = net.head.forward(h.mean_dims(&[2, 3]).flatten::<2>(1, 3));

    let out = net.forward(x).unwrap();
    let diff = max_difference(out, expected);
    assert!(
        diff < 1e-5,
        "the network differs from the hand-built one by {diff}"
    );
}

#[test]
fn a_zero_initialized_last_gamma_starts_every_block_as_its_shortcut() {
    let device = train_device();
    let config = ResnetConfig {
        zero_init_last_gamma: true,
        ..resnet("batch", &[4, 8], 2, Shortcut::Projection)
    };
    let mut net = build(config, [1, 8, 8], &device);
    let x = values([4, 1, 8, 8], 3, &device);
    let before = net.forward(x.clone()).unwrap();
    // The residual branch is multiplied by gamma = 0: what its first conv computes is lost.
    for block in &mut net.blocks {
        let weight = (block.first.conv.weight.val() * 3.0 + 1.0).detach();
        block.first.conv.weight = Param::from_tensor(weight);
    }
    let after = net.forward(x).unwrap();
    assert!(max_difference(before.clone(), after) < 1e-6);
    // Every other norm starts at gamma = 1.
    let gammas: Vec<f32> = net
        .norms_mut()
        .map(|norm| norm.affine().unwrap().gamma().mean().into_scalar::<f32>())
        .collect();
    let zero = gammas.iter().filter(|&&g| g == 0.0).count();
    assert_eq!(zero, 4, "the last norm of each of 4 blocks: {gammas:?}");
    assert_eq!(
        gammas.iter().filter(|&&g| g == 1.0).count(),
        gammas.len() - 4
    );
}

#[test]
fn folded_frozen_and_precise_models_compute_what_the_eval_model_computes() {
    let device = train_device();
    let config = ResnetConfig {
        weight_standardization: true,
        ..resnet("batch", &[4, 6], 1, Shortcut::Projection)
    };
    let model = ModelConfig::Resnet(config)
        .init(InputShape::Image([1, 6, 6]), 3, &device)
        .unwrap();
    for seed in 0..4 {
        let batch = values([4, 1, 6, 6], 40 + seed, &device) * 2.0 + 1.0;
        model.forward(Input::Images(batch)).unwrap();
    }
    let plain = Device::flex();
    let input = Input::Images(values([3, 1, 6, 6], 51, &plain));
    let eval = model.valid().forward(input.clone()).unwrap();
    let scale = eval.clone().abs().max().into_scalar::<f32>().max(1.0);

    let folded = model.fold_batch_norms();
    let Model::Resnet(mut net) = folded.clone() else {
        panic!("a resnet")
    };
    assert!(net.norms_mut().all(|n| matches!(n, Norm::None(_))));
    let diff = max_difference(folded.forward(input.clone()).unwrap(), eval.clone());
    assert!(diff <= 1e-5 * scale, "folded differs by {diff}");

    let frozen = model.clone().frozen().unwrap();
    let Input::Images(x) = input.clone() else {
        unreachable!()
    };
    let out = frozen.forward(Input::Images(x.autodiff())).unwrap().inner();
    let diff = max_difference(out, eval.clone());
    assert!(diff <= 1e-5 * scale, "frozen differs by {diff}");

    // PreciseBN over one batch: the population statistics become that batch's (up to the
    // unbiased variance they keep), unlike the moving averages of four other batches.
    let precise = model.valid().train().for_precise_statistics();
    let batch = values([8, 1, 6, 6], 60, &device);
    let in_training = precise
        .forward(Input::Images(batch.clone()))
        .unwrap()
        .inner();
    let with_precise = precise
        .valid()
        .forward(Input::Images(batch.clone().inner()))
        .unwrap();
    let with_averages = model.valid().forward(Input::Images(batch.inner())).unwrap();
    let precise_diff = max_difference(with_precise, in_training.clone());
    let average_diff = max_difference(with_averages, in_training);
    assert!(
        precise_diff < 0.05 * scale && precise_diff < average_diff / 5.0,
        "PreciseBN differs from the batch's statistics by {precise_diff}, the moving averages \
         by {average_diff}"
    );
}

#[test]
fn bad_configs_and_inputs_say_what_is_wrong() {
    let device = train_device();
    let cases = [
        (resnet("batch", &[], 1, Shortcut::ZeroPad), "widths"),
        (resnet("batch", &[4, 0], 1, Shortcut::ZeroPad), "widths"),
        (resnet("batch", &[4, 8], 0, Shortcut::ZeroPad), "blocks"),
        (resnet("batch", &[8, 4], 1, Shortcut::ZeroPad), "narrow"),
        (
            resnet("batch", &[2, 2, 2, 2], 1, Shortcut::ZeroPad),
            "to nothing",
        ),
    ];
    for (config, expected) in cases {
        let err = ModelConfig::Resnet(config)
            .init(InputShape::Image([1, 4, 4]), 3, &device)
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
    let narrowing = resnet("batch", &[8, 4], 1, Shortcut::Projection);
    assert!(
        ModelConfig::Resnet(narrowing)
            .init(InputShape::Image([1, 4, 4]), 3, &device)
            .is_ok()
    );

    let config: ModelConfig = toml::from_str(
        "kind = \"resnet\"\nwidths = [8, 16, 32]\nnorm = \"group\"\nzero_init_last_gamma = true",
    )
    .unwrap();
    assert_eq!(config.describe(), "ResNet-20 8/16/32");
    let err = ModelConfig::Resnet(ResnetConfig::default())
        .init(InputShape::Sequence(4), 3, &device)
        .unwrap_err();
    assert!(err.to_string().contains("image"), "{err}");

    let net = ModelConfig::Resnet(resnet("layer", &[4], 1, Shortcut::ZeroPad))
        .init(InputShape::Image([1, 4, 4]), 3, &device)
        .unwrap();
    let empty = Input::Images(values([0, 1, 4, 4], 0, &device));
    assert!(matches!(
        net.forward(empty),
        Err(ModelError::EmptyInput { .. })
    ));
}

#[test]
fn the_deepest_maps_follow_the_downsampling() {
    let resnet = ModelConfig::Resnet(ResnetConfig::default());
    assert_eq!(resnet.deepest_map([1, 28, 28]), Some([7, 7]));
    assert_eq!(resnet.deepest_map([3, 32, 32]), Some([8, 8]));
    // Stride-2 convolutions round up.
    assert_eq!(resnet.deepest_map([1, 27, 9]), Some([7, 3]));
    let cnn = |pool| {
        ModelConfig::Cnn(CnnConfig {
            channels: vec![4, 8, 16],
            pool,
            ..CnnConfig::default()
        })
    };
    // The last block's norms see its maps before its pooling; pooling rounds down.
    assert_eq!(cnn(Pool::Max).deepest_map([1, 28, 28]), Some([7, 7]));
    assert_eq!(cnn(Pool::Max).deepest_map([1, 27, 27]), Some([6, 6]));
    assert_eq!(cnn(Pool::None).deepest_map([1, 28, 28]), Some([28, 28]));
    let mlp = ModelConfig::Mlp(MlpConfig::default());
    assert_eq!(mlp.deepest_map([1, 28, 28]), None);
}
