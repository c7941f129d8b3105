//! The fused Adam against burn's, bit for bit: one tensor at a time over several steps, and a
//! module's parameters through burn's `ModuleOptimizer`.

use burn::module::{Module, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig as BurnAdamConfig, AdamState, GradientsParams, Optimizer};
use burn::tensor::{DType, Device, Tensor, TensorData};
use normlab_optim::AdamConfig;

/// `len` values of all signs and scales, zeros of both signs and subnormals among them, from
/// `seed`.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match i % 11 {
                0 => 0.0,
                1 => -0.0,
                2 => 1e-40,
                _ => {
                    let unit = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                    unit * 10f32.powi((state % 7) as i32 - 3)
                }
            }
        })
        .collect()
}

fn tensor(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [len]), device)
}

fn bits(t: &Tensor<1>) -> Vec<u32> {
    t.to_data()
        .try_to_vec::<f32>()
        .expect("f32 values")
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

fn state_bits(state: &AdamState<1>) -> (usize, Vec<u32>, Vec<u32>) {
    let momentum = &state.momentum;
    (
        momentum.time,
        bits(&momentum.moment_1),
        bits(&momentum.moment_2),
    )
}

/// Sizes on both sides of the parallel block (2^14 values), one value and none.
const SIZES: [usize; 6] = [0, 1, 7, 1000, (1 << 14) + 5, 100_003];

#[test]
fn each_step_gives_burns_bits() {
    let device = Device::flex();
    for weight_decay in [None, Some(1e-2)] {
        let fused = AdamConfig::default()
            .with_epsilon(1e-8)
            .with_weight_decay(weight_decay)
            .build();
        let burn = BurnAdamConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(weight_decay.map(WeightDecayConfig::new))
            .build();
        for (case, &len) in SIZES.iter().enumerate() {
            let start = tensor(values(len, case as u64), &device);
            let (mut ours, mut theirs) = ((start.clone(), None), (start, None));
            for step in 0..5u64 {
                let grad = tensor(values(len, 100 + step), &device);
                // A schedule's rates: the f64 rate is rounded to f32 as burn rounds it.
                let lr = 1e-3 * (1.0 + step as f64 / 3.0);
                ours = fused.step(lr, ours.0, grad.clone(), ours.1);
                theirs = burn.step(lr, theirs.0, grad, theirs.1);
                let what = format!("{len} values, step {step}, weight decay {weight_decay:?}");
                assert_eq!(bits(&ours.0), bits(&theirs.0), "parameters, {what}");
                let (ours_state, theirs_state) = (ours.1.as_ref(), theirs.1.as_ref());
                assert_eq!(
                    state_bits(ours_state.expect("a state")),
                    state_bits(theirs_state.expect("a state")),
                    "moments, {what}"
                );
            }
        }
    }
}

#[test]
fn burns_step_takes_over_from_the_fused_one_and_back() {
    let device = Device::flex();
    let fused = AdamConfig::default().build();
    let burn = BurnAdamConfig::new().build();
    let start = tensor(values(300, 7), &device);
    let mut reference = (start.clone(), None);
    let mut mixed = (start, None);
    for step in 0..6u64 {
        let grad = tensor(values(300, 50 + step), &device);
        reference = burn.step(1e-2, reference.0, grad.clone(), reference.1);
        mixed = if step % 2 == 0 {
            fused.step(1e-2, mixed.0, grad, mixed.1)
        } else {
            burn.step(1e-2, mixed.0, grad, mixed.1)
        };
    }
    assert_eq!(bits(&mixed.0), bits(&reference.0));
}

#[derive(Module, Debug)]
struct Weights {
    matrix: Param<Tensor<2>>,
    bias: Param<Tensor<1>>,
}

impl Weights {
    fn new(device: &Device) -> Self {
        let matrix = Tensor::<1>::from_data(TensorData::new(values(12 * 5, 3), [60]), device);
        Self {
            matrix: Param::from_tensor(matrix.reshape([12, 5])),
            bias: Param::from_tensor(tensor(values(5, 4), device)),
        }
    }

    /// A loss whose gradient differs from value to value.
    fn loss(&self, input: Tensor<2>) -> Tensor<1> {
        let hidden = input.matmul(self.matrix.val()) + self.bias.val().unsqueeze();
        (hidden.clone() * hidden.tanh()).sum()
    }
}

#[test]
fn a_module_trains_to_the_same_bits_as_with_burns_adam() {
    let device = Device::flex().autodiff();
    let train = |mut optimizer: burn::optim::ModuleOptimizer| {
        let mut model = Weights::new(&device);
        for step in 0..4u64 {
            let input =
                Tensor::<1>::from_data(TensorData::new(values(8 * 12, 9 + step), [96]), &device)
                    .reshape([8, 12]);
            let grads = GradientsParams::from_grads(model.loss(input).backward(), &model);
            model = optimizer.step(3e-3, model, grads);
        }
        let matrix: Tensor<1> = model.matrix.val().inner().reshape([60]);
        (bits(&matrix), bits(&model.bias.val().inner()))
    };
    let decay = Some(1e-3);
    assert_eq!(
        train(AdamConfig::default().with_weight_decay(decay).init()),
        train(
            BurnAdamConfig::new()
                .with_weight_decay(decay.map(WeightDecayConfig::new))
                .init()
        )
    );
}

/// Where the fused update does not apply (here f64 tensors on flex) the step is burn's own.
#[test]
fn other_float_types_take_burns_step() {
    let device = Device::flex();
    let start: Vec<f64> = values(50, 11).into_iter().map(f64::from).collect();
    let f64_tensor =
        |v: Vec<f64>| Tensor::<1>::from_data(TensorData::new(v, [50]), (&device, DType::F64));
    let grad = || f64_tensor(values(50, 12).into_iter().map(f64::from).collect());
    let (fused, burn) = (AdamConfig::default().build(), BurnAdamConfig::new().build());
    let (mut ours, mut theirs) = ((f64_tensor(start.clone()), None), (f64_tensor(start), None));
    for _ in 0..3 {
        ours = fused.step(1e-2, ours.0, grad(), ours.1);
        theirs = burn.step(1e-2, theirs.0, grad(), theirs.1);
    }
    let f64_bits = |t: Tensor<1>| -> Vec<u64> {
        let data = t.into_data().try_into_vec::<f64>().expect("f64 values");
        data.into_iter().map(f64::to_bits).collect()
    };
    assert_eq!(f64_bits(ours.0), f64_bits(theirs.0));
}
