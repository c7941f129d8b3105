//! The remedies for batch norm's failures hold the invariants their papers promise: each one
//! reduces to batch norm where it should, and the batch-free ones never look at the batch.

mod common;

use burn::nn::conv::Conv2dConfig;
use burn::nn::{LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use normlab_norm::*;

use common::*;

fn random<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    normal(shape, 0.5, 2.0, seed, device)
}

/// Trains `a` and `b` side by side on the same batches and checks that outputs and input
/// gradients agree at every step.
fn assert_same_training(a: &Norm, b: &Norm, shape: [usize; 4], steps: u64, what: &str) {
    let device = train_device();
    for step in 0..steps {
        let x = random(shape, 40 + step, &device);
        let r = random(shape, 80 + step, &device);
        let run = |norm: &Norm| {
            let x = x.clone().require_grad();
            let y = norm.forward(x.clone()).unwrap();
            let grads = (y.clone() * r.clone()).sum().backward();
            (values(y), values(x.grad(&grads).unwrap()))
        };
        let ((ya, ga), (yb, gb)) = (run(a), run(b));
        assert_close(&format!("{what}: output at step {step}"), &ya, &yb, 1e-5);
        assert_close(&format!("{what}: gradient at step {step}"), &ga, &gb, 1e-5);
    }
}

#[test]
fn batch_renorm_without_corrections_is_batch_norm() {
    let device = train_device();
    // r_max = 1 and d_max = 0 forever: r = 1 and d = 0.
    let renorm = BatchRenormConfig::default()
        .with_r_max(1.0)
        .with_d_max(0.0)
        .with_momentum(Momentum::Exponential(0.1))
        .init(4, &device)
        .map(Norm::BatchRenorm)
        .unwrap();
    let batch = NormConfig::Batch(BatchNormConfig::default())
        .init(4, &device)
        .unwrap();
    assert_same_training(
        &renorm,
        &batch,
        [3, 4, 5, 2],
        4,
        "batch renorm vs batch norm",
    );
    // The running means are folded alike; the variance is kept as a moving standard deviation.
    let mean = |norm: &Norm| values(norm.running_stats().unwrap().mean());
    assert_close("running mean", &mean(&renorm), &mean(&batch), 1e-5);
}

#[test]
fn batch_renorm_corrects_towards_its_moving_statistics() {
    let device = train_device();
    // No warm-up, full bounds at once: with a large d_max and r_max the output equals what
    // the moving statistics give, whatever the batch.
    let norm = BatchRenormConfig::default()
        .with_r_max(1e6)
        .with_d_max(1e6)
        .with_warmup_steps(0)
        .with_r_max_steps(0)
        .with_d_max_steps(0)
        .init(4, &device)
        .map(Norm::BatchRenorm)
        .unwrap();
    let x = random([6, 4, 3, 3], 1, &device);
    let eval_before = norm.valid().forward(x.clone().inner()).unwrap();
    let train = norm.forward(x).unwrap();
    assert_close(
        "unclipped renorm output = eval output",
        &values(train),
        &values(eval_before),
        1e-4,
    );
}

#[test]
fn batch_renorm_is_the_same_fused_and_composed_where_its_corrections_clip() {
    let device = train_device();
    // The final bounds from the first step, tight enough for the input's spread (2, against a
    // moving deviation that starts at 1) to clip `r`, and its mean (0.5) `d` in some channels.
    let config = BatchRenormConfig::default()
        .with_r_max(1.5)
        .with_d_max(0.5)
        .with_warmup_steps(0)
        .with_r_max_steps(0)
        .with_d_max_steps(0)
        .with_momentum(Momentum::Exponential(0.3));
    let [fused, composed] = [Kernels::Fastest, Kernels::Composed].map(|kernels| {
        let norm = config.init(4, &device).map(Norm::BatchRenorm).unwrap();
        norm.with_kernels(kernels)
    });
    let what = "fused vs composed batch renorm";
    assert_same_training(&fused, &composed, [6, 4, 3, 2], 4, what);
    let stats = |norm: &Norm| {
        let running = norm.running_stats().unwrap();
        [values(running.mean()), values(running.var())].concat()
    };
    assert_close(
        "running statistics",
        &stats(&fused),
        &stats(&composed),
        1e-5,
    );
    let (x, r) = (
        random([6, 4, 3, 2], 7, &device),
        random([6, 4, 3, 2], 8, &device),
    );
    let gradients = |norm: &Norm| {
        let y = norm.forward(x.clone()).unwrap();
        parameter_gradients(norm, (y * r.clone()).sum().backward())
    };
    let (ours, theirs) = (gradients(&fused), gradients(&composed));
    assert_close("gamma and beta gradients", &ours, &theirs, 1e-5);
}

#[test]
fn ghost_batch_norm_over_the_whole_batch_is_batch_norm() {
    let device = train_device();
    let ghost = NormConfig::Batch(BatchNormConfig::default().with_ghost_batch(Some(6)))
        .init(4, &device)
        .unwrap();
    let batch = NormConfig::Batch(BatchNormConfig::default())
        .init(4, &device)
        .unwrap();
    assert_same_training(&ghost, &batch, [6, 4, 3, 2], 3, "ghost 6 vs batch norm");
    let stats = |norm: &Norm| {
        let running = norm.running_stats().unwrap();
        [values(running.mean()), values(running.var())].concat()
    };
    assert_close("running statistics", &stats(&ghost), &stats(&batch), 1e-5);
}

/// The bits of every parameter gradient of `norm` in `grads`, in visiting order.
fn parameter_gradient_bits(norm: &Norm, grads: burn::tensor::Gradients) -> Vec<u32> {
    let values = parameter_gradients(norm, grads);
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn ghost_batch_norm_is_batch_norm_fed_each_virtual_batch_to_the_last_bit() {
    let device = train_device();
    // Virtual batches of 3, 3, 3 and the remaining 1 (three positions: not a single value).
    let config = |ghost| {
        BatchNormConfig::default()
            .with_affine(true)
            .with_ghost_batch(ghost)
    };
    let ghost = NormConfig::Batch(config(Some(3))).init(4, &device).unwrap();
    let alone = NormConfig::Batch(config(None)).init(4, &device).unwrap();
    let (x, r) = (
        random([10, 4, 3], 2, &device),
        random([10, 4, 3], 3, &device),
    );
    let bits = |t: Tensor<3>| values(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    // One step of each: the ghost layer on the whole batch, and one batch norm on the virtual
    // batches in turn, joined again; outputs, input and parameter gradients bit for bit.
    let step = |norm: &Norm, forward: &dyn Fn(Tensor<3>) -> Tensor<3>| {
        let input = x.clone().require_grad();
        let y = forward(input.clone());
        let grads = (y.clone() * r.clone()).sum().backward();
        let dx = bits(input.grad(&grads).unwrap());
        (bits(y), dx, parameter_gradient_bits(norm, grads))
    };
    let whole = step(&ghost, &|x| ghost.forward(x).unwrap());
    let parts = step(&alone, &|x| {
        let batches = [0..3, 3..6, 6..9, 9..10]
            .map(|rows| alone.forward(x.clone().slice(s![rows, .., ..])).unwrap());
        Tensor::cat(batches.to_vec(), 0)
    });
    assert_eq!(whole.0, parts.0, "outputs");
    assert_eq!(whole.1, parts.1, "input gradients");
    assert!(!whole.2.is_empty(), "gamma and beta take gradients");
    assert_eq!(whole.2, parts.2, "gamma and beta gradients");
    // The running statistics fold in each virtual batch in turn.
    let stats = |norm: &Norm| {
        let running = norm.running_stats().unwrap();
        bits(running.mean().unsqueeze::<3>())
            .into_iter()
            .chain(bits(running.var().unsqueeze::<3>()))
            .collect::<Vec<_>>()
    };
    assert_eq!(stats(&ghost), stats(&alone), "running statistics");
}

#[test]
fn batch_free_norms_never_look_at_the_rest_of_the_batch() {
    let device = train_device();
    for config in [
        NormConfig::Frn(FrnConfig::default()),
        NormConfig::Frn(FrnConfig::default().with_learned_epsilon(true)),
        NormConfig::EvoNormS0(EvoNormS0Config::default().with_groups(2)),
    ] {
        let norm = config.init(4, &device).unwrap();
        let sample = random([1, 4, 3, 3], 3, &device);
        let alone = values(norm.forward(sample.clone()).unwrap());
        for seed in [4, 5] {
            let others = random([3, 4, 3, 3], seed, &device) * 10.0;
            let batch = Tensor::cat(vec![others, sample.clone()], 0);
            let y = norm.forward(batch).unwrap().slice(s![3..4, .., .., ..]);
            assert_close(&format!("{config:?}"), &values(y), &alone, 1e-6);
        }
    }
}

#[test]
fn frozen_batch_norm_is_its_eval_map_in_training_too() {
    let device = train_device();
    for config in [
        BatchNormConfig::default(),
        BatchNormConfig::default().with_affine(false),
    ] {
        let norm = NormConfig::Batch(config).init(4, &device).unwrap();
        for seed in 0..3 {
            norm.forward(random([5, 4, 3], seed, &device)).unwrap();
        }
        let x = random([2, 4, 3], 9, &device);
        let eval = values(norm.valid().forward(x.clone().inner()).unwrap());
        let frozen = norm.frozen().unwrap();
        assert_close(
            "frozen (training) vs eval",
            &values(frozen.forward(x.clone()).unwrap()),
            &eval,
            1e-5,
        );
        assert_close(
            "frozen (eval) vs eval",
            &values(frozen.valid().forward(x.inner()).unwrap()),
            &eval,
            1e-5,
        );
    }
    let untracked = NormConfig::Batch(BatchNormConfig::default().with_track_running_stats(false))
        .init(4, &device)
        .unwrap();
    let err = untracked.frozen().unwrap_err().to_string();
    assert!(err.contains("no running statistics"), "{err}");
}

#[test]
fn folded_layers_compute_what_layer_and_batch_norm_compute_in_eval() {
    let device = train_device();
    let norm = NormConfig::Batch(BatchNormConfig::default())
        .init(6, &device)
        .unwrap();
    let linear = LinearConfig::new(5, 6).init(&device);
    let conv = Conv2dConfig::new([3, 6], [3, 3])
        .with_padding(PaddingConfig2d::Same)
        .init(&device);
    for seed in 0..3 {
        norm.forward(linear.forward(random([8, 5], seed, &device)))
            .unwrap();
    }
    let (norm, linear, conv) = (norm.valid(), linear.valid(), conv.valid());
    let plain = common::device();
    let x = random([4, 5], 10, &plain);
    let folded = fold_into_linear(&linear, &norm).unwrap();
    assert_close(
        "folded linear",
        &values(folded.forward(x.clone())),
        &values(norm.forward(linear.forward(x)).unwrap()),
        1e-5,
    );
    let images = random([2, 3, 5, 5], 11, &plain);
    let folded = fold_into_conv2d(&conv, &norm).unwrap();
    assert_close(
        "folded conv",
        &values(folded.forward(images.clone())),
        &values(norm.forward(conv.forward(images)).unwrap()),
        1e-5,
    );
    let group = NormConfig::Group(GroupNormConfig::new(2))
        .init(6, &plain)
        .unwrap();
    let err = fold_into_linear(&linear, &group).unwrap_err().to_string();
    assert!(
        err.contains("GroupNorm") && err.contains("own statistics"),
        "{err}"
    );
}

#[test]
fn precise_statistics_leave_converged_statistics_where_they_are() {
    let device = train_device();
    let norm = NormConfig::Batch(BatchNormConfig::default())
        .init(4, &device)
        .unwrap();
    // A stationary input: after 200 batches the moving average has converged.
    let batch = |seed: u64| random([16, 4, 4], 1000 + seed, &device);
    for seed in 0..200 {
        norm.forward(batch(seed)).unwrap();
    }
    let before = norm.running_stats().unwrap();
    let (mean, var) = (values(before.mean()), values(before.var()));
    let norm = norm.for_precise_statistics();
    for seed in 200..400 {
        norm.forward(batch(seed)).unwrap();
    }
    let after = norm.running_stats().unwrap();
    assert_eq!(values(after.batches()), [200.0]);
    let precise_mean = values(after.mean());
    // The moving average of the last ~10 batches and the average of 200 agree to about the
    // spread of a 10-batch average: 64 values per batch, variance 4.
    assert_close("precise mean", &precise_mean, &mean, 0.1);
    assert_close("precise variance", &values(after.var()), &var, 0.25);
    // And it is the equal-weight average, not a moving one: the same batches again give the
    // same estimate.
    let norm = norm.for_precise_statistics();
    for seed in 200..400 {
        norm.forward(batch(seed)).unwrap();
    }
    assert_close(
        "precise twice",
        &values(norm.running_stats().unwrap().mean()),
        &precise_mean,
        1e-6,
    );
}

#[test]
fn precise_statistics_are_the_average_of_the_batch_statistics() {
    let device = train_device();
    let norm = NormConfig::Batch(BatchNormConfig::default())
        .init(2, &device)
        .unwrap();
    // Batches whose channel means are 1, 2 and 6: their average is 3, whatever came before.
    norm.forward(Tensor::<2>::full([4, 2], 100.0, &device))
        .unwrap();
    let batches = [1.0f32, 2.0, 6.0].map(|m| {
        let x = [m - 1.0, m, m + 1.0, m, m - 1.0, m, m + 1.0, m];
        tensor(&x, [4, 2], &device)
    });
    let norm = norm.for_precise_statistics();
    for x in batches {
        norm.forward(x).unwrap();
    }
    let running = norm.running_stats().unwrap();
    assert_close("average mean", &values(running.mean()), &[3.0, 3.0], 1e-6);
    // Channel 0 has variance 4/3 in every batch (unbiased), channel 1 none.
    assert_close(
        "average variance",
        &values(running.var()),
        &[4.0 / 3.0, 0.0],
        1e-6,
    );
    assert_eq!(values(running.batches()), [3.0]);
}
