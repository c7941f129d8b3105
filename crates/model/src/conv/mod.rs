//! The model's 2-D convolutions: burn's `conv2d` on every backend, and on flex (CPU) a custom op
//! with its own backward ([`cpu`]) for the experiment networks' small convolutions, faster than
//! flex's general path (`benches/conv2d.rs` measures by how much).

mod cpu;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata,
    backend_extension,
};
use burn::prelude::*;
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bytes, DType};

use cpu::{ConvDims, Real};

/// `x: [N, C_in, H, W]` convolved with `weight: [C_out, C_in, kh, kw]` plus `bias: [C_out]`,
/// with `stride` and symmetric zero `padding`, no dilation or groups:
/// `[N, C_out, H_out, W_out]`, differentiable in all three.
///
/// On flex in f32 or f64 it runs normlab's kernel, elsewhere burn's `conv2d`; the two agree to
/// float rounding (`src/conv/tests.rs`).
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Tensor<4> {
    let on_flex = matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_));
    if !on_flex || !matches!(x.dtype(), DType::F32 | DType::F64) || x.dtype() != weight.dtype() {
        let options = ConvOptions::new(stride, padding, [1, 1], 1);
        return burn_conv2d(x, weight, bias, options);
    }
    let [c_out, ..] = weight.dims();
    let bias = bias.unwrap_or_else(|| Tensor::zeros([c_out], (&weight.device(), weight.dtype())));
    Tensor::from_dispatch(<Dispatch as ConvOps>::normlab_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        Steps { stride, padding },
    ))
}

/// How a convolution's window moves: its `stride` and the symmetric zero `padding`, per axis
/// `[height, width]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Steps {
    stride: [usize; 2],
    padding: [usize; 2],
}

/// The convolution as a backend op, and its backward.
#[backend_extension(Flex, Autodiff)]
pub(crate) trait ConvOps: Backend {
    /// See [`conv2d`].
    fn normlab_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        steps: Steps,
    ) -> FloatTensor<Self>;

    /// The input gradient of [`normlab_conv2d`](ConvOps::normlab_conv2d), for an input of
    /// `x_shape`.
    fn normlab_conv2d_input_grad(
        weight: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        x_shape: [usize; 4],
        steps: Steps,
    ) -> FloatTensor<Self>;

    /// `(dweight, dbias)` of [`normlab_conv2d`](ConvOps::normlab_conv2d), for a kernel of
    /// `kernel` size.
    fn normlab_conv2d_weight_grad(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        kernel: [usize; 2],
        steps: Steps,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// The geometry of a convolution of an input of `x` shape with `c_out` filters of `kernel`.
fn dims(x: &[usize], c_out: usize, kernel: [usize; 2], steps: Steps) -> ConvDims {
    let Steps { stride, padding } = steps;
    // The kernels size their buffers from these: refuse what burn's conv refuses, with the
    // shapes, rather than compute an output size below zero.
    let fits = |axis: usize| x[2 + axis] + 2 * padding[axis] >= kernel[axis];
    assert!(
        stride.iter().all(|&s| s > 0) && fits(0) && fits(1) && c_out > 0,
        "conv2d: input {x:?}, {c_out} filters of {kernel:?}, stride {stride:?}, padding {padding:?}: \
         the kernel must fit the padded input, the stride and the filter count be positive"
    );
    ConvDims {
        n: x[0],
        c_in: x[1],
        h: x[2],
        w: x[3],
        c_out,
        kernel,
        stride,
        padding,
    }
}

/// The contiguous values of `t` as `T`.
fn values<T: Real>(t: &FlexTensor) -> &[T] {
    t.storage()
}

/// A flex tensor of `shape` holding `values`.
fn tensor<T: Real>(values: Vec<T>, shape: &[usize], dtype: DType) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape.to_vec().into()),
        dtype,
    )
}

impl ConvOps for Flex {
    fn normlab_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        steps: Steps,
    ) -> FlexTensor {
        let [x, weight, bias] = [x, weight, bias].map(|t| t.to_contiguous());
        let (x_shape, w_shape) = (x.layout().shape(), weight.layout().shape());
        assert_eq!(
            x_shape[1], w_shape[1],
            "conv2d: input {x_shape:?}, weight {w_shape:?}"
        );
        let d = dims(x_shape, w_shape[0], [w_shape[2], w_shape[3]], steps);
        let [ho, wo] = d.out_hw();
        normlab_norm::on_floats!(x.dtype(), "the conv2d kernels", |T| {
            let y = cpu::conv2d::<T>(values(&x), values(&weight), values(&bias), &d);
            tensor(y, &[d.n, d.c_out, ho, wo], x.dtype())
        })
    }

    fn normlab_conv2d_input_grad(
        weight: FlexTensor,
        dy: FlexTensor,
        x_shape: [usize; 4],
        steps: Steps,
    ) -> FlexTensor {
        let [weight, dy] = [weight, dy].map(|t| t.to_contiguous());
        let w_shape = weight.layout().shape();
        let d = dims(&x_shape, w_shape[0], [w_shape[2], w_shape[3]], steps);
        normlab_norm::on_floats!(dy.dtype(), "the conv2d kernels", |T| {
            let dx = cpu::conv2d_input_grad::<T>(values(&weight), values(&dy), &d);
            tensor(dx, &x_shape, dy.dtype())
        })
    }

    fn normlab_conv2d_weight_grad(
        x: FlexTensor,
        dy: FlexTensor,
        kernel: [usize; 2],
        steps: Steps,
    ) -> (FlexTensor, FlexTensor) {
        let [x, dy] = [x, dy].map(|t| t.to_contiguous());
        let c_out = dy.layout().shape()[1];
        let d = dims(x.layout().shape(), c_out, kernel, steps);
        normlab_norm::on_floats!(x.dtype(), "the conv2d kernels", |T| {
            let (dw, db) = cpu::conv2d_weight_grad::<T>(values(&x), values(&dy), &d);
            (
                tensor(dw, &[c_out, d.c_in, kernel[0], kernel[1]], x.dtype()),
                tensor(db, &[c_out], x.dtype()),
            )
        })
    }
}

impl<B: Backend + ConvOps, C: CheckpointStrategy> ConvOps for Autodiff<B, C> {
    fn normlab_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        steps: Steps,
    ) -> FloatTensor<Self> {
        /// Computes only the gradients some parent needs: the first layer's input, for one,
        /// needs none.
        #[derive(Debug)]
        struct Conv2dBackward;

        impl<B: Backend + ConvOps> Backward<B, 3> for Conv2dBackward {
            type State = (B::FloatTensorPrimitive, B::FloatTensorPrimitive, Steps);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let dy = grads.consume::<B>(&ops.node);
                let (x, weight, steps) = ops.state;
                let [x_node, weight_node, bias_node] = ops.parents;
                if weight_node.is_some() || bias_node.is_some() {
                    let w_shape = weight.shape();
                    let kernel = [w_shape[2], w_shape[3]];
                    let (dweight, dbias) =
                        B::normlab_conv2d_weight_grad(x.clone(), dy.clone(), kernel, steps);
                    for (node, grad) in [(weight_node, dweight), (bias_node, dbias)] {
                        if let Some(node) = node {
                            grads.register::<B>(node.id, grad);
                        }
                    }
                }
                if let Some(node) = x_node {
                    let s = x.shape();
                    let x_shape = [s[0], s[1], s[2], s[3]];
                    let dx = B::normlab_conv2d_input_grad(weight, dy, x_shape, steps);
                    grads.register::<B>(node.id, dx);
                }
            }
        }

        let prepared = Conv2dBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful();
        let [x, weight, bias] = [x, weight, bias].map(|t| t.into_primitive());
        let y = B::normlab_conv2d(x.clone(), weight.clone(), bias, steps);
        match prepared {
            OpsKind::Tracked(prep) => prep.finish((x, weight, steps), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn normlab_conv2d_input_grad(
        weight: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        x_shape: [usize; 4],
        steps: Steps,
    ) -> FloatTensor<Self> {
        let [weight, dy] = [weight, dy].map(|t| t.into_primitive());
        Self::from_inner(B::normlab_conv2d_input_grad(weight, dy, x_shape, steps))
    }

    fn normlab_conv2d_weight_grad(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        kernel: [usize; 2],
        steps: Steps,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [x, dy] = [x, dy].map(|t| t.into_primitive());
        let (dweight, dbias) = B::normlab_conv2d_weight_grad(x, dy, kernel, steps);
        (Self::from_inner(dweight), Self::from_inner(dbias))
    }
}

#[cfg(test)]
mod tests;
