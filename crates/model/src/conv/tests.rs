//! normlab's convolution against burn's own `conv2d` on flex: output and all three gradients,
//! over batch sizes 1 to 128, channels 1 to 128, kernels 1, 3 and 5, odd and even image sizes,
//! strides 1 and 2 and paddings from none to beyond "same".

use burn::prelude::*;
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Distribution};

use super::conv2d;

/// Largest difference relative to the largest reference value: the two sum in different
/// orders, in f32.
const TOLERANCE: f32 = 1e-5;

struct Case {
    x: [usize; 4],
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    bias: bool,
}

fn case(x: [usize; 4], c_out: usize, kernel: usize, stride: usize, padding: usize) -> Case {
    Case {
        x,
        c_out,
        kernel,
        stride,
        padding,
        bias: true,
    }
}

fn cases() -> Vec<Case> {
    vec![
        case([1, 1, 5, 5], 1, 3, 1, 1),
        case([2, 3, 7, 9], 4, 3, 1, 1),
        case([3, 2, 6, 6], 5, 5, 1, 2),
        case([4, 8, 11, 7], 16, 1, 1, 0),
        case([2, 5, 9, 9], 3, 3, 2, 1),
        case([2, 4, 10, 8], 6, 3, 2, 0),
        case([1, 3, 4, 4], 2, 5, 1, 3),
        case([3, 6, 8, 5], 7, 1, 2, 1),
        case([2, 4, 5, 7], 3, 5, 2, 2),
        case([128, 3, 9, 9], 16, 3, 1, 1),
        case([64, 1, 28, 28], 8, 3, 1, 1),
        case([2, 128, 7, 5], 128, 3, 1, 1),
        case([5, 32, 15, 15], 64, 5, 1, 2),
        case([3, 64, 13, 13], 1, 3, 2, 1),
        // One value; one channel; rows one off every vector width.
        case([1, 1, 1, 1], 1, 1, 1, 0),
        case([1, 1, 1, 17], 1, 1, 1, 0),
        case([1, 1, 3, 7], 2, 3, 1, 1),
        case([2, 1, 15, 17], 3, 3, 1, 1),
        case([1, 2, 31, 33], 1, 3, 2, 1),
        case([1, 1, 63, 65], 1, 3, 1, 1),
        case([1, 3, 1, 1], 2, 3, 1, 1),
        Case {
            bias: false,
            ..case([2, 3, 6, 5], 4, 3, 1, 1)
        },
    ]
}

fn max_relative_error(got: Tensor<4>, want: Tensor<4>) -> f32 {
    normlab_testkit::max_relative_error(got, want, 1e-6)
}

fn check(case: &Case) {
    let device = Device::flex().autodiff();
    let Case {
        x,
        c_out,
        kernel,
        stride,
        padding,
        bias,
    } = *case;
    let name =
        format!("x {x:?} -> {c_out} channels, kernel {kernel}, stride {stride}, padding {padding}");
    let normal = Distribution::Normal(0.0, 1.0);
    let input = Tensor::<4>::random(x, normal, &device);
    let weight = Tensor::<4>::random([c_out, x[1], kernel, kernel], normal, &device);
    let bias_values = bias.then(|| Tensor::<1>::random([c_out], normal, &device));
    // One output gradient for both runs, drawn here: burn's RNG is process-wide and other tests
    // draw from it on other threads, so re-seeding before each run would not repeat it.
    let out = |size: usize| (size + 2 * padding - kernel) / stride + 1;
    let dy = Tensor::<4>::random([x[0], c_out, out(x[2]), out(x[3])], normal, &device);

    let run = |ours: bool| {
        let x = input.clone().require_grad();
        let w = weight.clone().require_grad();
        let b = bias_values.clone().map(Tensor::require_grad);
        let y = match ours {
            true => conv2d(x.clone(), w.clone(), b.clone(), [stride; 2], [padding; 2]),
            false => {
                let options = ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1);
                burn_conv2d(x.clone(), w.clone(), b.clone(), options)
            }
        };
        let grads = (y.clone() * dy.clone()).sum().backward();
        let db = b.map(|b| {
            b.grad(&grads)
                .expect("bias gradient")
                .reshape([1, 1, 1, c_out])
        });
        (
            y.inner(),
            x.grad(&grads).expect("input gradient"),
            w.grad(&grads).expect("weight gradient"),
            db,
        )
    };
    let ours = run(true);
    let burns = run(false);
    let pairs = [
        ("output", ours.0, burns.0),
        ("input gradient", ours.1, burns.1),
        ("weight gradient", ours.2, burns.2),
    ];
    for (what, got, want) in pairs {
        assert_eq!(got.dims(), want.dims(), "{name}: {what} shape");
        let error = max_relative_error(got, want);
        assert!(error <= TOLERANCE, "{name}: {what} off by {error:e}");
    }
    if let (Some(got), Some(want)) = (ours.3, burns.3) {
        // Each entry sums dy over N, H and W in another order than burn's: its rounding error
        // scales with the sum of |dy|, not with the sum itself, which cancellation can bring
        // near zero (one draw in a few dozen did, with a relative error of 1.7e-5).
        let scale = dy.inner().abs().sum_dim(0).sum_dim(2).sum_dim(3);
        let scale = scale.reshape([1, 1, 1, c_out]);
        let error = ((got - want).abs() / scale).max().into_scalar::<f32>();
        assert!(error <= TOLERANCE, "{name}: bias gradient off by {error:e}");
    }
}

#[test]
fn matches_burns_conv2d_forward_and_backward() {
    for case in cases() {
        check(&case);
    }
}

#[test]
fn runs_in_f64() {
    let device = Device::flex();
    let x = Tensor::<4>::ones([2, 3, 5, 5], (&device, DType::F64));
    let w = Tensor::<4>::ones([4, 3, 3, 3], (&device, DType::F64));
    let y = conv2d(x, w, None, [1, 1], [1, 1]);
    assert_eq!(y.dtype(), DType::F64);
    // The centre sees all 27 weights, a corner 12.
    let values = y.into_data().try_to_vec::<f64>().unwrap();
    assert_eq!(values[12], 27.0);
    assert_eq!(values[0], 12.0);
}

#[test]
fn an_empty_batch_gives_an_empty_output_and_zero_weight_gradients() {
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::zeros([0, 3, 5, 5], &device).require_grad();
    let w = Tensor::<4>::ones([4, 3, 3, 3], &device).require_grad();
    let b = Tensor::<1>::ones([4], &device).require_grad();
    let y = conv2d(x.clone(), w.clone(), Some(b.clone()), [1, 1], [1, 1]);
    assert_eq!(y.dims(), [0, 4, 5, 5]);
    let grads = y.sum().backward();
    let dw = w.grad(&grads).expect("weight gradient");
    assert_eq!(dw.abs().sum().into_scalar::<f32>(), 0.0);
    let db = b.grad(&grads).expect("bias gradient");
    assert_eq!(db.abs().sum().into_scalar::<f32>(), 0.0);
}

#[test]
#[should_panic(expected = "the kernel must fit the padded input")]
fn a_kernel_larger_than_the_padded_input_is_refused() {
    let device = Device::flex();
    let x = Tensor::<4>::ones([1, 1, 2, 2], &device);
    let w = Tensor::<4>::ones([1, 1, 5, 5], &device);
    let _ = conv2d(x, w, None, [1, 1], [1, 1]);
}
