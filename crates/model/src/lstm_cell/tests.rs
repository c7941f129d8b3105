//! The custom ops against the composed cell on flex: the same bits forward and backward (the
//! experiments' records must not depend on which path trained them), in f32 and f64, from one
//! value to rows large enough to run in parallel, with hidden sizes off every vector width.

use burn::prelude::*;
use burn::tensor::{DType, Distribution};

use normlab_norm::Kernels;

use super::{cell_state, output};

/// `(n, hidden)`: one value; widths 1 off the vector widths; a small batch of the experiments'
/// 100 units; rows large enough to be shared out over threads.
const SHAPES: [(usize, usize); 8] = [
    (1, 1),
    (1, 7),
    (3, 17),
    (2, 33),
    (4, 100),
    (5, 65),
    (100, 100),
    (64, 257),
];

/// The bits of a tensor's values, so that a comparison tells `-0` from `0` and sees NaN.
fn bits(t: Tensor<2>) -> Vec<u64> {
    match t.dtype() {
        DType::F32 => values::<f32>(t)
            .iter()
            .map(|v| v.to_bits() as u64)
            .collect(),
        _ => values::<f64>(t).iter().map(|v| v.to_bits()).collect(),
    }
}

fn values<E: burn::tensor::Element>(t: Tensor<2>) -> Vec<E> {
    t.into_data()
        .try_to_vec::<E>()
        .expect("the tensor's own float type")
}

/// One LSTM step through the cell (state, then output) and its gradients for a given
/// `dh` and `dc'`: `(c', h, dgates, dc)`.
fn step(
    ours: bool,
    gates: &Tensor<2>,
    c: &Tensor<2>,
    [dh, dc_new]: [&Tensor<2>; 2],
) -> [Tensor<2>; 4] {
    let gates = gates.clone().require_grad();
    let c = c.clone().require_grad();
    let kernels = match ours {
        true => Kernels::Fastest,
        false => Kernels::Composed,
    };
    let c_new = cell_state(gates.clone(), c.clone(), kernels);
    let h = output(gates.clone(), c_new.clone(), kernels);
    let loss = (h.clone() * dh.clone()).sum() + (c_new.clone() * dc_new.clone()).sum();
    let grads = loss.backward();
    [
        c_new.inner(),
        h.inner(),
        gates.grad(&grads).expect("gates gradient"),
        c.grad(&grads).expect("cell state gradient"),
    ]
}

fn check(dtype: DType) {
    let device = Device::flex().autodiff();
    // Gates up to +-12: saturated sigmoids and tanhs, both branches of flex's sigmoid.
    let spread = Distribution::Normal(0.0, 4.0);
    for (n, hidden) in SHAPES {
        let draw = |columns| Tensor::<2>::random([n, columns], spread, (&device, dtype));
        let (gates, c, dh, dc_new) = (draw(4 * hidden), draw(hidden), draw(hidden), draw(hidden));
        let ours = step(true, &gates, &c, [&dh, &dc_new]);
        let composed = step(false, &gates, &c, [&dh, &dc_new]);
        let names = ["c'", "h", "dgates", "dc"];
        for ((name, got), want) in names.iter().zip(ours).zip(composed) {
            assert_eq!(
                got.dims(),
                want.dims(),
                "[{n}, {hidden}] {dtype:?}: {name} shape"
            );
            assert!(
                bits(got) == bits(want),
                "[{n}, {hidden}] {dtype:?}: {name} differs from the composed cell's bits"
            );
        }
    }
}

#[test]
fn gives_the_composed_cells_bits_in_f32() {
    check(DType::F32);
}

#[test]
fn gives_the_composed_cells_bits_in_f64() {
    check(DType::F64);
}

#[test]
fn matches_the_lstm_equations_at_known_values() {
    let device = Device::flex();
    // i = 0, f = ln 3, g = atanh(0.5), o = -ln 3: σ(i) = 1/2, σ(f) = 3/4, tanh(g) = 1/2,
    // σ(o) = 1/4.
    let gates = Tensor::<2>::from_floats([[0.0, 3f32.ln(), 0.5f32.atanh(), -(3f32.ln())]], &device);
    let c = Tensor::<2>::from_floats([[2.0]], &device);
    let c_new = cell_state(gates.clone(), c, Kernels::Fastest);
    let expected = 0.75 * 2.0 + 0.5 * 0.5;
    let got = c_new.clone().into_scalar::<f32>();
    assert!(
        (got - expected).abs() < 1e-6,
        "c' = {got}, expected {expected}"
    );
    let h = output(gates, c_new, Kernels::Fastest).into_scalar::<f32>();
    let expected = 0.25 * expected.tanh();
    assert!((h - expected).abs() < 1e-6, "h = {h}, expected {expected}");
}

#[test]
fn an_empty_batch_or_no_units_gives_empty_states_and_gradients() {
    let device = Device::flex().autodiff();
    for (n, hidden) in [(0, 2), (3, 0), (0, 0)] {
        let gates = Tensor::<2>::zeros([n, 4 * hidden], &device).require_grad();
        let c = Tensor::<2>::zeros([n, hidden], &device).require_grad();
        let c_new = cell_state(gates.clone(), c.clone(), Kernels::Fastest);
        let h = output(gates.clone(), c_new.clone(), Kernels::Fastest);
        assert_eq!((c_new.dims(), h.dims()), ([n, hidden], [n, hidden]));
        let grads = (h.sum() + c_new.sum()).backward();
        let dgates = gates.grad(&grads).expect("gates gradient");
        assert_eq!(dgates.dims(), [n, 4 * hidden]);
        assert_eq!(
            c.grad(&grads).expect("cell state gradient").dims(),
            [n, hidden]
        );
    }
}

#[test]
fn runs_without_autodiff_and_on_a_transposed_input() {
    let device = Device::flex();
    let gates = Tensor::<2>::random([12, 3], Distribution::Default, &device).transpose();
    let c = Tensor::<2>::random([3, 3], Distribution::Default, &device);
    let run = |kernels| {
        let c_new = cell_state(gates.clone(), c.clone(), kernels);
        (
            bits(c_new.clone()),
            bits(output(gates.clone(), c_new, kernels)),
        )
    };
    assert_eq!(run(Kernels::Fastest), run(Kernels::Composed));
}
