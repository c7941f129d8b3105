//! `Model::without_dropout`, the train-mode score's copy: batch statistics still, no dropout,
//! and no draw from burn's process-wide random numbers (in its own test binary, so that no
//! other test draws from them meanwhile).

use burn::prelude::*;
use burn::tensor::Distribution;
use normlab_model::*;
use normlab_norm::NormConfig;
use normlab_testkit::{to_vec as values_of, train_device, values};

/// An input of `shape` for a batch of six, the same numbers on any device.
fn input(shape: InputShape, device: &Device) -> Input {
    match shape {
        InputShape::Features(f) => Input::Features(values([6, f], 3, device)),
        InputShape::Image([c, h, w]) => Input::Images(values([6, c, h, w], 3, device)),
        InputShape::Sequence(f) => Input::Sequences {
            values: values([6, 7, f], 3, device),
            mask: None,
        },
    }
}

#[test]
fn without_dropout_keeps_batch_statistics_and_draws_no_random_numbers() {
    let device = train_device();
    let norm: NormConfig = "batch".parse().unwrap();
    let cases = [
        (
            ModelConfig::Mlp(MlpConfig {
                hidden: vec![16, 8],
                norm: norm.clone(),
                dropout: 0.5,
                ..MlpConfig::default()
            }),
            InputShape::Features(12),
        ),
        (
            ModelConfig::Cnn(CnnConfig {
                channels: vec![8, 16],
                norm: norm.clone(),
                dropout: 0.5,
                ..CnnConfig::default()
            }),
            InputShape::Image([1, 8, 8]),
        ),
        (
            ModelConfig::Recurrent(RecurrentConfig {
                hidden: 8,
                layers: 2,
                norm,
                dropout: 0.5,
                ..RecurrentConfig::default()
            }),
            InputShape::Sequence(5),
        ),
    ];
    for (config, shape) in cases {
        let model = config.init(shape, 4, &device).unwrap();
        let what = format!("{:?}", model.kind());
        // The train-mode score's copy, as the runner makes it.
        let scoring = model.valid().train().no_grad();
        let with_dropout = values_of(scoring.forward(input(shape, &device)).unwrap());
        let scoring = scoring.without_dropout();
        // Seeded, a forward pass, then a draw: the draw is the seed's first when the pass drew
        // nothing.
        device.seed(7);
        let without = values_of(scoring.forward(input(shape, &device)).unwrap());
        let after = values_of(Tensor::<1>::random([8], Distribution::Default, &device));
        device.seed(7);
        let first = values_of(Tensor::<1>::random([8], Distribution::Default, &device));
        assert_eq!(after, first, "{what}: the pass drew random numbers");
        let again = values_of(scoring.forward(input(shape, &device)).unwrap());
        assert_eq!(without, again, "{what}: two passes differ");
        assert_ne!(without, with_dropout, "{what}: dropout was off already");
        // Still batch statistics: not what eval mode gives.
        let plain = device.clone().inner();
        let eval = values_of(model.valid().forward(input(shape, &plain)).unwrap());
        assert_ne!(without, eval, "{what}: running statistics");
    }
}
