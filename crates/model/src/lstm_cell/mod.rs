//! The LSTM cell's element-wise half: the gates' activations, the new cell state and the output.
//! On flex (CPU) two custom ops with their own backward do it in one pass each way ([`cpu`]);
//! composed of burn's ops the same steps take thirteen ops and their autodiff nodes, whose
//! dispatch, allocation and bookkeeping dominate a small batch's step. Both give the same bits.

mod cpu;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, Flex, backend_extension,
};
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::{Bytes, DType};
use normlab_norm::Kernels;

use cpu::Real;

/// `gates: [N, 4H]`, the pre-activations of the input, forget, cell and output gates in that
/// order, and the cell state `c: [N, H]` -> the next cell state `σ(f) c + σ(i) tanh(g)`,
/// `[N, H]`, differentiable in both. `kernels` picks the custom op (where it runs) or burn's.
pub(crate) fn cell_state(gates: Tensor<2>, c: Tensor<2>, kernels: Kernels) -> Tensor<2> {
    if !runs_fused(&gates, &c, kernels) {
        return composed::cell_state(gates, c);
    }
    let (c_new, _saved) =
        <Dispatch as LstmCellOps>::lstm_cell_state(gates.into_dispatch(), c.into_dispatch());
    Tensor::from_dispatch(c_new)
}

/// `gates: [N, 4H]` as in [`cell_state`], `c: [N, H]` (the cell state, normalized or not) ->
/// the hidden state `σ(o) tanh(c)`, `[N, H]`, differentiable in both.
pub(crate) fn output(gates: Tensor<2>, c: Tensor<2>, kernels: Kernels) -> Tensor<2> {
    if !runs_fused(&gates, &c, kernels) {
        return composed::output(gates, c);
    }
    let (h, _saved) =
        <Dispatch as LstmCellOps>::lstm_output(gates.into_dispatch(), c.into_dispatch());
    Tensor::from_dispatch(h)
}

/// Whether the custom ops take the call: asked for, on flex, in f32 or f64, `gates` four
/// times as wide as `c` (other shapes go to burn's ops, whose errors name them).
fn runs_fused(gates: &Tensor<2>, c: &Tensor<2>, kernels: Kernels) -> bool {
    let on_flex = matches!(
        gates.device().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    );
    let [n, width] = gates.dims();
    kernels == Kernels::Fastest
        && on_flex
        && matches!(gates.dtype(), DType::F32 | DType::F64)
        && gates.dtype() == c.dtype()
        && c.dims() == [n, width / 4]
        && width % 4 == 0
}

/// The same steps in burn's ops: every backend but flex, and the reference the tests hold the
/// custom ops to.
mod composed {
    use super::*;

    /// Gate `k` of `gates: [N, 4H]` (`0..4` for `i, f, g, o`): `[N, H]`.
    fn gate(gates: &Tensor<2>, k: usize) -> Tensor<2> {
        let [n, width] = gates.dims();
        let hidden = width / 4;
        gates.clone().slice([0..n, k * hidden..(k + 1) * hidden])
    }

    /// See [`cell_state`](super::cell_state).
    pub(crate) fn cell_state(gates: Tensor<2>, c: Tensor<2>) -> Tensor<2> {
        sigmoid(gate(&gates, 1)) * c + sigmoid(gate(&gates, 0)) * tanh(gate(&gates, 2))
    }

    /// See [`output`](super::output).
    pub(crate) fn output(gates: Tensor<2>, c: Tensor<2>) -> Tensor<2> {
        sigmoid(gate(&gates, 3)) * tanh(c)
    }
}

/// The two halves of the cell as backend ops. Each forward also returns the activations its
/// backward reuses, so that the backward computes no `exp` or `tanh` again.
#[backend_extension(Flex, Autodiff)]
pub(crate) trait LstmCellOps: Backend {
    /// See [`cell_state`]: `(gates, c)` -> `(c', saved)`, `saved: [N, 3H]` holding
    /// `σ(i), σ(f), tanh(g)`.
    fn lstm_cell_state(
        gates: FloatTensor<Self>,
        c: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `(saved, c, dc')` -> `(dgates: [N, 4H], dc: [N, H])`.
    fn lstm_cell_state_backward(
        saved: FloatTensor<Self>,
        c: FloatTensor<Self>,
        dc_new: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// See [`output`]: `(gates, c)` -> `(h, saved)`, `saved: [N, 2H]` holding `σ(o), tanh(c)`.
    fn lstm_output(
        gates: FloatTensor<Self>,
        c: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `(saved, dh)` -> `(dgates: [N, 4H], dc: [N, H])`.
    fn lstm_output_backward(
        saved: FloatTensor<Self>,
        dh: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// The contiguous values of `t` as `T`.
fn values<T: Real>(t: &FlexTensor) -> &[T] {
    t.storage()
}

/// A flex tensor of `[rows, columns]` holding `values`.
fn tensor<T: Real>(values: Vec<T>, rows: usize, columns: usize, dtype: DType) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(vec![rows, columns].into()),
        dtype,
    )
}

/// `[N, H]` of a cell state.
fn rows_hidden(c: &FlexTensor) -> (usize, usize) {
    let shape = c.layout().shape();
    (shape[0], shape[1])
}

impl LstmCellOps for Flex {
    fn lstm_cell_state(gates: FlexTensor, c: FlexTensor) -> (FlexTensor, FlexTensor) {
        let [gates, c] = [gates, c].map(|t| t.to_contiguous());
        let ((n, hidden), dtype) = (rows_hidden(&c), c.dtype());
        normlab_norm::on_floats!(dtype, "the LSTM cell", |T| {
            let (c_new, saved) = cpu::cell_state::<T>(values(&gates), values(&c), hidden);
            (
                tensor(c_new, n, hidden, dtype),
                tensor(saved, n, 3 * hidden, dtype),
            )
        })
    }

    fn lstm_cell_state_backward(
        saved: FlexTensor,
        c: FlexTensor,
        dc_new: FlexTensor,
    ) -> (FlexTensor, FlexTensor) {
        let [saved, c, dc_new] = [saved, c, dc_new].map(|t| t.to_contiguous());
        let ((n, hidden), dtype) = (rows_hidden(&c), c.dtype());
        normlab_norm::on_floats!(dtype, "the LSTM cell", |T| {
            let (dgates, dc) =
                cpu::cell_state_backward::<T>(values(&saved), values(&c), values(&dc_new), hidden);
            (
                tensor(dgates, n, 4 * hidden, dtype),
                tensor(dc, n, hidden, dtype),
            )
        })
    }

    fn lstm_output(gates: FlexTensor, c: FlexTensor) -> (FlexTensor, FlexTensor) {
        let [gates, c] = [gates, c].map(|t| t.to_contiguous());
        let ((n, hidden), dtype) = (rows_hidden(&c), c.dtype());
        normlab_norm::on_floats!(dtype, "the LSTM cell", |T| {
            let (h, saved) = cpu::output::<T>(values(&gates), values(&c), hidden);
            (
                tensor(h, n, hidden, dtype),
                tensor(saved, n, 2 * hidden, dtype),
            )
        })
    }

    fn lstm_output_backward(saved: FlexTensor, dh: FlexTensor) -> (FlexTensor, FlexTensor) {
        let [saved, dh] = [saved, dh].map(|t| t.to_contiguous());
        let ((n, hidden), dtype) = (rows_hidden(&dh), dh.dtype());
        normlab_norm::on_floats!(dtype, "the LSTM cell", |T| {
            let (dgates, dc) = cpu::output_backward::<T>(values(&saved), values(&dh), hidden);
            (
                tensor(dgates, n, 4 * hidden, dtype),
                tensor(dc, n, hidden, dtype),
            )
        })
    }
}

/// Hands `dgates` and `dc` to whichever of an op's two parents, `gates` and `c`, needs a
/// gradient: the first step's zero cell state needs none.
macro_rules! register {
    ($grads:expr, $parents:expr, $dgates_dc:expr) => {{
        let (dgates, dc) = $dgates_dc;
        for (node, grad) in $parents.into_iter().zip([dgates, dc]) {
            if let Some(node) = node {
                $grads.register::<B>(node.id, grad);
            }
        }
    }};
}

impl<B: Backend + LstmCellOps, C: CheckpointStrategy> LstmCellOps for Autodiff<B, C> {
    fn lstm_cell_state(
        gates: FloatTensor<Self>,
        c: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Debug)]
        struct CellStateBackward;

        impl<B: Backend + LstmCellOps> Backward<B, 2> for CellStateBackward {
            /// `(saved, c)`.
            type State = (B::FloatTensorPrimitive, B::FloatTensorPrimitive);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let dc_new = grads.consume::<B>(&ops.node);
                let (saved, c) = ops.state;
                let (dgates, dc) = B::lstm_cell_state_backward(saved, c, dc_new);
                let [c_node, gates_node] = ops.parents;
                register!(grads, [gates_node, c_node], (dgates, dc));
            }
        }

        // The parents in this order make autodiff's depth-first walk (last parent first) meet
        // `gates` before `c`, as it meets them through the composed cell's `σ(i) tanh(g)`
        // before `σ(f) c`. Gradients that sum over time steps (the bias, a norm's gamma) are
        // summed in that walk's order, so another order changes their last bits.
        let prepared = CellStateBackward
            .prepare::<C>([c.node(), gates.node()])
            .compute_bound()
            .stateful();
        let [gates, c] = [gates, c].map(|t| t.into_primitive());
        let (c_new, saved) = B::lstm_cell_state(gates, c.clone());
        let c_new = match prepared {
            OpsKind::Tracked(prep) => prep.finish((saved.clone(), c), c_new),
            OpsKind::UnTracked(prep) => prep.finish(c_new),
        };
        (c_new, Self::from_inner(saved))
    }

    fn lstm_cell_state_backward(
        saved: FloatTensor<Self>,
        c: FloatTensor<Self>,
        dc_new: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [saved, c, dc_new] = [saved, c, dc_new].map(|t| t.into_primitive());
        let (dgates, dc) = B::lstm_cell_state_backward(saved, c, dc_new);
        (Self::from_inner(dgates), Self::from_inner(dc))
    }

    fn lstm_output(
        gates: FloatTensor<Self>,
        c: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Debug)]
        struct OutputBackward;

        impl<B: Backend + LstmCellOps> Backward<B, 2> for OutputBackward {
            /// `saved`.
            type State = B::FloatTensorPrimitive;

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let dh = grads.consume::<B>(&ops.node);
                register!(grads, ops.parents, B::lstm_output_backward(ops.state, dh));
            }
        }

        // The composed `σ(o) tanh(c)` is walked through `c` first, as this order walks it.
        let prepared = OutputBackward
            .prepare::<C>([gates.node(), c.node()])
            .compute_bound()
            .stateful();
        let [gates, c] = [gates, c].map(|t| t.into_primitive());
        let (h, saved) = B::lstm_output(gates, c);
        let h = match prepared {
            OpsKind::Tracked(prep) => prep.finish(saved.clone(), h),
            OpsKind::UnTracked(prep) => prep.finish(h),
        };
        (h, Self::from_inner(saved))
    }

    fn lstm_output_backward(
        saved: FloatTensor<Self>,
        dh: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [saved, dh] = [saved, dh].map(|t| t.into_primitive());
        let (dgates, dc) = B::lstm_output_backward(saved, dh);
        (Self::from_inner(dgates), Self::from_inner(dc))
    }
}

#[cfg(test)]
mod tests;
