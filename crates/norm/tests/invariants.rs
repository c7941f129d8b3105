//! The properties NORMS.md asks of every layer, checked directly on the layers.

mod common;

use burn::prelude::*;
use normlab_norm::*;

use common::*;

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    normal(shape, 3.0, 2.0, 7, device)
}

fn plain(kind: &str) -> NormConfig {
    match kind {
        "batch" => NormConfig::Batch(BatchNormConfig::default().with_affine(false)),
        "layer" => NormConfig::Layer(LayerNormConfig::default().with_affine(false)),
        "instance" => NormConfig::Instance(InstanceNormConfig::default()),
        "group" => NormConfig::Group(GroupNormConfig::new(2).with_affine(false)),
        "rms" => NormConfig::Rms(RmsNormConfig::default().with_affine(false)),
        other => panic!("{other}"),
    }
}

/// Mean and variance of `y: [N, C, H, W]` over `dims`, flattened.
fn stats(y: Tensor<4>, dims: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let mean = y.clone().mean_dims(dims);
    let var = (y - mean.clone()).square().mean_dims(dims);
    (values(mean), values(var))
}

#[test]
fn each_family_standardizes_over_its_own_axes() {
    let device = train_device();
    let x = random([4, 4, 3, 5], &device);
    for (kind, dims) in [
        ("batch", &[0, 2, 3][..]),
        ("layer", &[1, 2, 3]),
        ("instance", &[2, 3]),
    ] {
        let y = plain(kind)
            .init(4, &device)
            .unwrap()
            .forward(x.clone())
            .unwrap();
        let (mean, var) = stats(y, dims);
        assert_close(&format!("{kind} mean"), &mean, &vec![0.0; mean.len()], 1e-5);
        // Variance is var / (var + eps): just below 1.
        assert_close(&format!("{kind} var"), &var, &vec![1.0; var.len()], 1e-3);
    }
    // Group norm with 2 groups: channels {0, 1} and {2, 3} of each sample.
    let y = plain("group")
        .init(4, &device)
        .unwrap()
        .forward(x.clone())
        .unwrap();
    let (mean, var) = stats(y.reshape([4, 2, 2, 15]), &[2, 3]);
    assert_close("group mean", &mean, &[0.0; 8], 1e-5);
    assert_close("group var", &var, &[1.0; 8], 1e-3);
    // RMS: unit mean square per sample.
    let y = plain("rms").init(4, &device).unwrap().forward(x).unwrap();
    let mean_square = values(y.square().mean_dims(&[1, 2, 3]));
    assert_close("rms mean square", &mean_square, &[1.0; 4], 1e-4);
}

#[test]
fn group_norm_spans_layer_and_instance_norm() {
    let device = device();
    let x = random([3, 6, 4, 4], &device);
    let one_group = GroupNormConfig::new(1).init(6, &device).unwrap();
    let layer = LayerNormConfig::default().init(6, &device).unwrap();
    assert_close(
        "groups = 1 vs layer",
        &values(one_group.forward(x.clone()).unwrap()),
        &values(layer.forward(x.clone()).unwrap()),
        1e-6,
    );
    let c_groups = GroupNormConfig::new(6).init(6, &device).unwrap();
    let instance = InstanceNormConfig::default()
        .with_affine(true)
        .init(6, &device)
        .unwrap();
    assert_close(
        "groups = C vs instance",
        &values(c_groups.forward(x.clone()).unwrap()),
        &values(instance.forward(x).unwrap()),
        1e-6,
    );
}

/// A batch of 3 sequences of up to 5 steps, lengths 5, 2, 4; padding holds `pad`.
fn padded_batch(pad: f32, device: &Device) -> (Tensor<3>, Tensor<2, Bool>) {
    let x = random([3, 5, 4], device);
    let mask = prefix_mask(&[5, 2, 4], 5, device);
    let padded = x.mask_fill(
        mask.clone()
            .bool_not()
            .unsqueeze_dim::<3>(2)
            .expand([3, 5, 4]),
        pad,
    );
    (padded, mask)
}

fn every_family() -> Vec<NormConfig> {
    let mut configs: Vec<NormConfig> = NormConfig::KINDS
        .iter()
        .map(|k| k.parse().unwrap())
        .collect();
    // The default 32 groups do not divide the 4 features of these tests.
    configs.retain(|c| !matches!(c, NormConfig::Group(_) | NormConfig::EvoNormS0(_)));
    configs.push(NormConfig::Group(GroupNormConfig::new(2)));
    configs.push(NormConfig::EvoNormS0(
        EvoNormS0Config::default().with_groups(2),
    ));
    configs.push(NormConfig::Batch(
        BatchNormConfig::default().with_per_step(Some(5)),
    ));
    // Virtual batches that divide the tests' batches of 6, and ones that leave a rest.
    for ghost in [2, 4] {
        configs.push(NormConfig::Batch(
            BatchNormConfig::default().with_ghost_batch(Some(ghost)),
        ));
    }
    configs
}

/// The families that accept channels-first input: all but per-step batch norm.
fn channel_families() -> Vec<NormConfig> {
    let mut configs = every_family();
    configs.retain(|c| !matches!(c, NormConfig::Batch(b) if b.per_step.is_some()));
    configs
}

#[test]
fn padding_never_enters_a_statistic_and_comes_out_zero() {
    let device = train_device();
    for config in every_family() {
        let zeros = {
            let norm = config.init(4, &device).unwrap();
            let (x, mask) = padded_batch(0.0, &device);
            norm.forward_sequence(x, Some(mask)).unwrap()
        };
        let norm = config.init(4, &device).unwrap();
        let (x, mask) = padded_batch(1e6, &device);
        let x = x.require_grad();
        let huge = norm
            .forward_sequence(x.clone(), Some(mask.clone()))
            .unwrap();
        assert_close(
            &format!("{config:?}: padding value changed the output"),
            &values(huge.clone()),
            &values(zeros),
            1e-5,
        );
        let padded = mask.bool_not().unsqueeze_dim::<3>(2).expand([3, 5, 4]);
        let at_padding = values(huge.clone().mask_fill(padded.clone().bool_not(), 0.0));
        assert!(
            at_padding.iter().all(|v| *v == 0.0),
            "{config:?}: padded output not zero"
        );
        let grads = (huge * random([3, 5, 4], &device)).sum().backward();
        let grad = x
            .grad(&grads)
            .unwrap()
            .mask_fill(padded.clone().bool_not(), 0.0);
        assert!(
            values(grad).iter().all(|v| *v == 0.0),
            "{config:?}: gradient reached padding"
        );

        // In eval too (running statistics: batch norm zeroes its padding itself there).
        let (x, mask) = padded_batch(1e6, &common::device());
        let eval = norm.valid().forward_sequence(x, Some(mask)).unwrap();
        let padded = Tensor::from_data(padded.into_data(), &common::device());
        let at_padding = values(eval.mask_fill(padded.bool_not(), 0.0));
        assert!(
            at_padding.iter().all(|v| *v == 0.0),
            "{config:?}: padded output not zero in eval"
        );
    }
}

#[test]
fn shared_batch_norm_over_a_padded_sequence_equals_batch_norm_over_its_real_steps() {
    let device = train_device();
    let (x, mask) = padded_batch(0.0, &device);
    let norm = BatchNormConfig::default().init(4, &device).unwrap();
    let y = values(norm.forward_sequence(x.clone(), Some(mask)).unwrap());
    // The real steps as one dense batch: rows (0, 0..5), (1, 0..2), (2, 0..4).
    let rows: Vec<Tensor<2>> = [(0, 5), (1, 2), (2, 4)]
        .iter()
        .map(|&(n, len)| x.clone().slice(s![n, 0..len, ..]).squeeze_dim::<2>(0))
        .collect();
    let dense = BatchNormConfig::default().init(4, &device).unwrap();
    let expected = values(dense.forward(Tensor::cat(rows, 0)).unwrap());
    let real: Vec<f32> = [(0, 5), (1, 2), (2, 4)]
        .iter()
        .flat_map(|&(n, len)| y[n * 20..n * 20 + len * 4].to_vec())
        .collect();
    assert_close("packed vs padded", &real, &expected, 1e-5);
}

#[test]
fn per_step_batch_norm_keeps_one_statistic_per_step_and_reuses_the_last() {
    let device = train_device();
    let norm = BatchNormConfig::default()
        .with_momentum(Momentum::Exponential(1.0))
        .with_running_variance(RunningVariance::Biased)
        .with_per_step(Some(8))
        .init(4, &device)
        .unwrap();
    let x = random([6, 5, 4], &device);
    norm.forward_sequence(x.clone(), None).unwrap();
    let running = norm.running_stats().unwrap();
    let means = values(running.mean());
    for t in 0..5 {
        let expected = values(x.clone().slice(s![.., t, ..]).mean_dim(0));
        assert_close(
            &format!("step {t} mean"),
            &means[t * 4..t * 4 + 4],
            &expected,
            1e-5,
        );
    }
    assert_eq!(
        &means[20..],
        &[0.0; 12],
        "untrained steps keep their initial mean"
    );

    // Eval: a 9-step sequence (longer than any trained and than per_step) runs, and its steps
    // 5..9 use the statistics of step 4.
    let eval = norm.valid();
    let long = random([2, 9, 4], &common::device());
    let y = values(eval.forward_sequence(long.clone(), None).unwrap());
    let last_stats = eval.forward_step(long.clone().slice(s![.., 8, ..]).squeeze_dim(1), 4, None);
    let y8: Vec<f32> = (0..2)
        .flat_map(|n| y[n * 36 + 32..n * 36 + 36].to_vec())
        .collect();
    assert_close(
        "step 8 uses step 4's statistics",
        &y8,
        &values(last_stats.unwrap()),
        1e-6,
    );
}

#[test]
fn per_step_batch_norm_falls_back_to_running_statistics_where_one_sequence_runs() {
    let device = train_device();
    let norm = BatchNormConfig::default()
        .with_per_step(Some(5))
        .init(4, &device)
        .unwrap();
    // Lengths 5, 2, 4: step 4 has one running sequence.
    let (x, mask) = padded_batch(0.0, &device);
    let y = values(norm.forward_sequence(x.clone(), Some(mask)).unwrap());
    let step4 = &y[16..20];
    let at_init = BatchNormConfig::default().init(4, &device).unwrap().valid();
    let expected = at_init.forward(x.slice(s![0..1, 4, ..]).squeeze_dim::<2>(1).inner());
    assert_close(
        "lone step uses running stats",
        step4,
        &values(expected.unwrap()),
        1e-6,
    );
    let batches = values(norm.running_stats().unwrap().batches());
    assert_eq!(
        batches,
        [1.0, 1.0, 1.0, 1.0, 0.0],
        "the lone step updated its statistics"
    );
}

#[test]
fn a_padded_batch_with_a_single_real_value_falls_back_to_running_statistics() {
    let device = train_device();
    for config in [
        BatchNormConfig::default(),
        BatchNormConfig::default().with_per_step(Some(3)),
    ] {
        let norm = config.init(4, &device).unwrap();
        let x = random([2, 3, 4], &device);
        // Only the first step of the first sequence is real.
        let mask = prefix_mask(&[1, 0], 3, &device);
        let y = values(norm.forward_sequence(x.clone(), Some(mask)).unwrap());
        // Running statistics at their start: mean 0, variance 1.
        let expected: Vec<f32> = values(x.slice(s![0..1, 0..1, ..]))
            .iter()
            .map(|v| v / (1.0f32 + 1e-5).sqrt())
            .collect();
        assert_close("fallback", &y[..4], &expected, 1e-6);
        assert!(y[4..].iter().all(|v| *v == 0.0));
        let batches = values(norm.running_stats().unwrap().batches());
        assert!(
            batches.iter().all(|b| *b == 0.0),
            "no statistics were updated"
        );
    }
}

#[test]
fn batch_norm_eval_output_does_not_depend_on_the_rest_of_the_batch() {
    let device = train_device();
    let norm = BatchNormConfig::default().init(3, &device).unwrap();
    for _ in 0..3 {
        norm.forward(random([8, 3, 4, 4], &device)).unwrap();
    }
    let batch = random([5, 3, 4, 4], &device);
    let one = batch.clone().slice(s![2..3]);
    let train_batch = values(norm.forward(batch.clone()).unwrap().slice(s![2..3]));
    let train_alone = values(norm.forward(one.clone() * 1.0).unwrap());
    assert!(
        relative_difference(&train_batch, &train_alone) > 1e-2,
        "training output must depend on the batch"
    );
    let eval = norm.valid();
    let in_batch = values(eval.forward(batch.inner()).unwrap().slice(s![2..3]));
    let alone = values(eval.forward(one.inner()).unwrap());
    assert_close("eval at batch 1 vs in batch", &alone, &in_batch, 1e-6);
}

#[test]
fn constant_channels_give_beta_not_nan() {
    let device = train_device();
    for config in channel_families() {
        let norm = config.init(4, &device).unwrap();
        let x = Tensor::<3>::full([3, 4, 5], 7.5, &device);
        let y = values(norm.forward(x).unwrap());
        assert!(
            y.iter().all(|v| v.is_finite()),
            "{config:?} gave non-finite output"
        );
        // The families that subtract a mean give beta; the others divide a constant by its own
        // scale (or by starting statistics, for online norm).
        let uncentered = matches!(
            config,
            NormConfig::None
                | NormConfig::Rms(_)
                | NormConfig::Frn(_)
                | NormConfig::EvoNormS0(_)
                | NormConfig::EvoNormB0(_)
                | NormConfig::Online(_)
        );
        if !uncentered {
            assert!(
                y.iter().all(|v| *v == 0.0),
                "{config:?}: constant input must give beta = 0"
            );
        }
    }
}

#[test]
fn statistics_stay_accurate_for_large_mean_small_variance_input() {
    let device = train_device();
    // Mean 1e4, std 1e-2 in f32, 2 channels of 4096 values each.
    let mut data = Vec::new();
    let mut state = 12345u64;
    for _ in 0..2 * 4096 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let uniform = (state >> 11) as f64 / (1u64 << 53) as f64;
        data.push((1e4 + 1e-2 * 3f64.sqrt() * (2.0 * uniform - 1.0)) as f32);
    }
    // Reference statistics of the f32 values, in f64.
    let channel = |c: usize| data.iter().skip(c).step_by(2).map(|&v| v as f64);
    let mean: Vec<f64> = (0..2).map(|c| channel(c).sum::<f64>() / 4096.0).collect();
    let var: Vec<f64> = (0..2)
        .map(|c| channel(c).map(|v| (v - mean[c]).powi(2)).sum::<f64>() / 4096.0)
        .collect();
    let expected: Vec<f32> = data
        .iter()
        .enumerate()
        .map(|(i, &v)| ((v as f64 - mean[i % 2]) / (var[i % 2] + 1e-5).sqrt()) as f32)
        .collect();

    let x = tensor::<2>(&data, [4096, 2], &device);
    let configs = [
        NormConfig::Batch(
            BatchNormConfig::default()
                .with_momentum(Momentum::Exponential(1.0))
                .with_running_variance(RunningVariance::Biased),
        ),
        NormConfig::Batch(BatchNormConfig::default()),
    ];
    for config in configs {
        let norm = config.init(2, &device).unwrap();
        let y = values(norm.forward(x.clone()).unwrap());
        assert_close(&format!("{config:?} dense"), &y, &expected, 1e-3);
        let masked = norm
            .forward_sequence(
                x.clone().reshape([64, 64, 2]),
                Some(prefix_mask(&[64; 64], 64, &device)),
            )
            .unwrap();
        assert_close(
            &format!("{config:?} masked"),
            &values(masked),
            &expected,
            1e-3,
        );
    }
    let norm = configs_running();
    norm.forward(x.clone()).unwrap();
    let running = norm.running_stats().unwrap();
    let got_var = values(running.var());
    for c in 0..2 {
        let rel = (got_var[c] as f64 - var[c]).abs() / var[c];
        assert!(
            rel < 1e-3,
            "running variance {} vs {} (relative error {rel:e})",
            got_var[c],
            var[c]
        );
    }
    // Instance and group norm see the same data per sample.
    let per_sample = x.reshape([1, 4096, 2]).swap_dims(1, 2);
    let instance = InstanceNormConfig::default().init(2, &device).unwrap();
    let y = values(instance.forward(per_sample).unwrap().swap_dims(1, 2));
    assert_close("instance", &y, &expected, 1e-3);
}

fn configs_running() -> BatchNorm {
    BatchNormConfig::default()
        .with_momentum(Momentum::Exponential(1.0))
        .with_running_variance(RunningVariance::Biased)
        .init(2, &train_device())
        .unwrap()
}

#[test]
fn cumulative_momentum_averages_every_batch_and_biased_option_skips_bessel() {
    let device = train_device();
    let norm = BatchNormConfig::default()
        .with_momentum(Momentum::Cumulative)
        .with_running_variance(RunningVariance::Biased)
        .init(1, &device)
        .unwrap();
    // Batches [0, 2], [4, 6], [8, 10]: means 1, 5, 9 and biased variance 1 each.
    for start in [0.0, 4.0, 8.0] {
        norm.forward(tensor::<2>(&[start, start + 2.0], [2, 1], &device))
            .unwrap();
    }
    let running = norm.running_stats().unwrap();
    assert_close("cumulative mean", &values(running.mean()), &[5.0], 1e-6);
    assert_close("biased var", &values(running.var()), &[1.0], 1e-6);
    // Unbiased (the default) doubles the variance of a batch of 2: burn-nn gets this wrong.
    let unbiased = BatchNormConfig::default()
        .with_momentum(Momentum::Exponential(1.0))
        .init(1, &device)
        .unwrap();
    unbiased
        .forward(tensor::<2>(&[2.0, 6.0], [2, 1], &device))
        .unwrap();
    let var = values(unbiased.running_stats().unwrap().var());
    assert_close("unbiased var", &var, &[8.0], 1e-6);
}

#[test]
fn untracked_batch_norm_uses_batch_statistics_in_eval() {
    let device = train_device();
    let norm = BatchNormConfig::default()
        .with_track_running_stats(false)
        .init(3, &device)
        .unwrap();
    let x = random([6, 3], &device);
    let train = values(norm.forward(x.clone()).unwrap());
    let eval = values(norm.valid().forward(x.inner()).unwrap());
    assert_close("eval = train without running stats", &eval, &train, 1e-6);
}

#[test]
fn every_layout_is_accepted() {
    let device = train_device();
    for config in channel_families() {
        let norm = config.init(4, &device).unwrap();
        if !matches!(config, NormConfig::Instance(_)) {
            assert_eq!(
                norm.forward(random([3, 4], &device)).unwrap().dims(),
                [3, 4]
            );
        }
        assert_eq!(
            norm.forward(random([3, 4, 5], &device)).unwrap().dims(),
            [3, 4, 5]
        );
        assert_eq!(
            norm.forward(random([3, 4, 5, 2], &device)).unwrap().dims(),
            [3, 4, 5, 2]
        );
        let x = random([2, 4, 3, 2, 2], &device);
        assert_eq!(norm.forward(x).unwrap().dims(), [2, 4, 3, 2, 2]);
        let seq = norm
            .forward_sequence(random([3, 6, 4], &device), None)
            .unwrap();
        assert_eq!(seq.dims(), [3, 6, 4]);
    }
}

/// The running statistics of `norm` (mean, variance, batches seen), flattened; empty without.
fn running(norm: &Norm) -> Vec<f32> {
    norm.running_stats().map_or_else(Vec::new, |stats| {
        [
            values(stats.mean()),
            values(stats.var()),
            values(stats.batches()),
        ]
        .concat()
    })
}

#[test]
fn empty_input_comes_back_as_it_is_and_moves_no_statistic() {
    let device = train_device();
    for config in every_family() {
        let norm = config.init(4, &device).unwrap();
        let before = running(&norm);
        let name = norm.describe();
        let channels_first = !matches!(&config, NormConfig::Batch(b) if b.per_step.is_some());
        if channels_first {
            for shape in [[0, 4, 5], [3, 4, 0]] {
                let y = norm.forward(random(shape, &device)).unwrap();
                assert_eq!(y.dims(), shape, "{name}");
                // In eval too, where some families run kernels of their own.
                let y = norm
                    .valid()
                    .forward(random(shape, &device).inner())
                    .unwrap();
                assert_eq!(y.dims(), shape, "{name} in eval");
            }
            let y = norm.forward(random([0, 4], &device)).unwrap();
            assert_eq!(y.dims(), [0, 4], "{name}");
            let y = norm.forward(random([2, 4, 0, 3], &device)).unwrap();
            assert_eq!(y.dims(), [2, 4, 0, 3], "{name}");
        }
        for [n, t] in [[0, 6], [3, 0]] {
            let mask =
                Tensor::<2, Bool>::from_data(TensorData::new(vec![true; n * t], [n, t]), &device);
            for mask in [None, Some(mask)] {
                let y = norm
                    .forward_sequence(random([n, t, 4], &device), mask)
                    .unwrap();
                assert_eq!(y.dims(), [n, t, 4], "{name}");
            }
        }
        let y = norm.forward_step(random([0, 4], &device), 0, None).unwrap();
        assert_eq!(y.dims(), [0, 4], "{name}");
        assert_eq!(running(&norm), before, "{name}: running statistics moved");
    }
}

/// Every family on the smallest inputs it may meet (one value, one channel, one group, one
/// position, one time step, a batch of one) trains and evaluates to finite values and
/// gradients, or refuses with its error: never a panic or a NaN.
#[test]
fn tiny_inputs_give_finite_values_or_an_error() {
    let device = train_device();
    for features in [1, 2, 3] {
        for config in every_family() {
            let Ok(norm) = config.clone().init(features, &device) else {
                continue; // e.g. 2 groups of 1 or 3 features: refused at init, tested elsewhere
            };
            let name = format!("{} on {features} features", norm.describe());
            for shape in [[1, features], [2, features]] {
                forward_both(&name, &norm, shape, &device);
            }
            for shape in [[1, features, 1], [1, features, 3], [2, features, 7]] {
                forward_both(&name, &norm, shape, &device);
            }
            for shape in [[1, features, 1, 1], [1, features, 17, 1]] {
                forward_both(&name, &norm, shape, &device);
            }
            for [n, t] in [[1, 1], [2, 1], [1, 3]] {
                let x = random([n, t, features], &device).require_grad();
                check_finite(
                    &name,
                    &[n, t, features],
                    true,
                    norm.forward_sequence(x, None),
                );
                let x = random([n, features], &device).require_grad();
                check_finite(&name, &[n, features], true, norm.forward_step(x, 0, None));
            }
        }
    }
}

/// `norm.forward` on an input of `shape`, in training and in eval.
fn forward_both<const D: usize>(name: &str, norm: &Norm, shape: [usize; D], device: &Device) {
    let train = norm.forward(random(shape, device).require_grad());
    check_finite(name, &shape, true, train);
    let eval = norm.valid().forward(random(shape, device).inner());
    check_finite(name, &shape, false, eval);
}

/// The result is a refusal, or finite values whose gradient is finite too.
fn check_finite<const D: usize>(
    name: &str,
    shape: &[usize],
    train: bool,
    result: Result<Tensor<D>, NormError>,
) {
    let Ok(y) = result else { return };
    let what = format!("{name}, input {shape:?}, training {train}");
    let out = values(y.clone());
    assert!(out.iter().all(|v| v.is_finite()), "{what}: output {out:?}");
    if train {
        let grads = (y.clone() * y).sum().backward();
        let _ = grads; // a backward pass that does not panic; its values are checked elsewhere
    }
}

/// Batch norm over padded steps, trained on a sequence and step by step through a recurrence:
/// the fused kernel for padded rows gives what burn's composed ops give, in the output, the
/// input gradient, the parameter gradients and the running statistics. Steps where one
/// sequence alone runs fall back to the running statistics on both paths.
#[test]
fn batch_norm_over_padded_steps_is_the_same_fused_and_composed() {
    let device = train_device();
    let (n, t, f) = (4, 9, 5);
    // Steps 5..9 have one sequence running, steps 2..4 three, steps 0..2 all four.
    let mask = prefix_mask(&[9, 5, 4, 2], t, &device);
    let x = random([n, t, f], &device) * 2.0 + 3.0;
    let w = random([n, t, f], &device);
    let configs = [
        BatchNormConfig::default(),
        BatchNormConfig::default().with_affine(false),
        BatchNormConfig::default()
            .with_gamma_init(0.1)
            .with_per_step(Some(t)),
        BatchNormConfig::default().with_running_variance(RunningVariance::Biased),
    ];
    for config in configs {
        let name = format!("{config:?}");
        let layers = [Kernels::Fastest, Kernels::Composed].map(|kernels| {
            NormConfig::Batch(config.clone())
                .init(f, &device)
                .unwrap()
                .with_kernels(kernels)
        });
        // Step by step, then the whole sequence at once (not for per-step statistics).
        let forward = |norm: &Norm, x: Tensor<3>, by_steps: bool| {
            if !by_steps {
                return norm.forward_sequence(x, Some(mask.clone())).unwrap();
            }
            let steps = (0..t).map(|step| {
                let x_t = x.clone().slice(s![.., step, ..]).squeeze_dim::<2>(1);
                let running = mask.clone().slice(s![.., step]).squeeze_dim::<1>(1);
                norm.forward_step(x_t, step, Some(running)).unwrap()
            });
            Tensor::stack(steps.collect(), 1)
        };
        let passes = match config.per_step {
            Some(_) => vec![true],
            None => vec![true, false],
        };
        for by_steps in passes {
            let pass = if by_steps {
                "by steps"
            } else {
                "as a sequence"
            };
            let [fused, composed] = layers.clone().map(|norm| {
                let x = x.clone().require_grad();
                let y = forward(&norm, x.clone(), by_steps);
                let grads = (y.clone() * w.clone()).sum().backward();
                let dx = values(x.grad(&grads).unwrap());
                let running = norm.running_stats().unwrap();
                let running = [values(running.mean()), values(running.var())].concat();
                [values(y), dx, parameter_gradients(&norm, grads), running]
            });
            let what = [
                "output",
                "input gradient",
                "parameter gradients",
                "running statistics",
            ];
            for ((what, fused), composed) in what.iter().zip(&fused).zip(&composed) {
                assert_close(&format!("{name} {pass}: {what}"), fused, composed, 1e-5);
            }
        }
    }
}

#[test]
fn a_layer_set_to_composed_kernels_computes_the_same_in_burn_ops() {
    let device = train_device();
    for config in channel_families() {
        let fused = config.init(4, &device).unwrap();
        assert_eq!(fused.kernels(), Kernels::Fastest);
        // A layer of its own: clones share running statistics, which online norm updates.
        let composed = config
            .init(4, &device)
            .unwrap()
            .with_kernels(Kernels::Composed);
        let name = fused.describe();
        if !matches!(config, NormConfig::None) {
            assert_eq!(composed.kernels(), Kernels::Composed, "{name}");
        }
        let x = random([6, 4, 33], &device);
        let w = random([6, 4, 33], &device);
        let run = |norm: &Norm| {
            let x = x.clone().require_grad();
            let y = norm.forward(x.clone()).unwrap();
            let grads = (y.clone() * w.clone()).sum().backward();
            [values(y), values(x.grad(&grads).unwrap())]
        };
        let ([y_fused, dx_fused], [y_composed, dx_composed]) = (run(&fused), run(&composed));
        assert_close(&name, &y_fused, &y_composed, 1e-5);
        let what = format!("{name}: input gradient");
        assert_close(&what, &dx_fused, &dx_composed, 1e-4);
    }
}

/// Batch norm's running statistics folded after a recurrence's last step
/// ([`fold_statistics_after`]) are those folded at every step, to the bit: statistics shared over
/// the steps and per step, exponential and cumulative, over padded steps, and read in the middle
/// of the recurrence (which makes the waiting folds first).
#[test]
fn statistics_folded_after_the_steps_are_those_folded_at_each_step() {
    let device = train_device();
    let (n, t, f) = (4, 7, 5);
    let mask = prefix_mask(&[7, 5, 4, 2], t, &device);
    let configs = [
        BatchNormConfig::default(),
        BatchNormConfig::default().with_per_step(Some(t)),
        BatchNormConfig::default()
            .with_per_step(Some(t))
            .with_momentum(Momentum::Cumulative),
        BatchNormConfig::default().with_momentum(Momentum::Cumulative),
    ];
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    for config in configs {
        for padded in [false, true] {
            let name = format!("{config:?}, padded {padded}");
            let [each_step, after] = [false, true].map(|deferred| {
                let norm = NormConfig::Batch(config.clone()).init(f, &device).unwrap();
                let mut read_inside = Vec::new();
                for sequence in 0..3u64 {
                    let x = normal([n, t, f], 1.0, 2.0, 40 + sequence, &device);
                    let mut steps = || {
                        for step in 0..t {
                            let x_t = x.clone().slice(s![.., step, ..]).squeeze_dim::<2>(1);
                            let running = padded
                                .then(|| mask.clone().slice(s![.., step]).squeeze_dim::<1>(1));
                            norm.forward_step(x_t, step, running).unwrap();
                            if sequence == 1 && step == 3 {
                                // A read inside the recurrence sees the steps before it.
                                read_inside = bits(values(norm.running_stats().unwrap().mean()));
                            }
                        }
                    };
                    match deferred {
                        true => fold_statistics_after(steps),
                        false => steps(),
                    }
                }
                let running = norm.running_stats().unwrap();
                [running.mean(), running.var()]
                    .map(|s| bits(values(s)))
                    .into_iter()
                    .chain([bits(values(running.batches())), read_inside])
                    .collect::<Vec<_>>()
            });
            assert_eq!(each_step, after, "{name}");
        }
    }
}
