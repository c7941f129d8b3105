//! One time step of a sequence, with one gradient for the whole sequence.
//!
//! A recurrent layer computes `Wx x` for the whole sequence at once and takes its steps out one
//! by one. Taken with burn's `slice`, each step's backward zero-fills a gradient the size of the
//! whole sequence and adds it to the others': `T` full-size passes for `T` steps, a sixth of an
//! LSTM's training step at batch 32. Here the backward of each step adds its gradient into the
//! sequence's one gradient, in place, at its step. The sums are the same (`g + 0`, the adds in
//! the same order), so the numbers are too.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension,
};
use burn::prelude::*;
use burn::tensor::{DType, Shape, Slice};

/// Step `t` of `sequence: [N, T, F]`: `[N, F]`, differentiable.
///
/// On flex its backward writes into one gradient of the sequence; elsewhere it is burn's
/// `slice`.
pub(crate) fn time_step(sequence: Tensor<3>, t: usize) -> Tensor<2> {
    let on_flex = matches!(
        sequence.device().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    );
    if !on_flex {
        return sequence.slice(s![.., t, ..]).squeeze_dim::<2>(1);
    }
    Tensor::from_dispatch(<Dispatch as TimeStepOps>::normlab_time_step(
        sequence.into_dispatch(),
        t,
    ))
}

/// The slices that pick step `t` of a `[N, T, F]` tensor.
fn at_step(t: usize) -> [Slice; 3] {
    [
        Slice::full(),
        Slice::new(t as isize, Some(t as isize + 1), 1),
        Slice::full(),
    ]
}

/// The step as a backend op.
#[backend_extension(Flex, Autodiff)]
pub(crate) trait TimeStepOps: Backend {
    /// See [`time_step`].
    fn normlab_time_step(sequence: FloatTensor<Self>, t: usize) -> FloatTensor<Self>;
}

impl TimeStepOps for Flex {
    fn normlab_time_step(sequence: FloatTensor<Self>, t: usize) -> FloatTensor<Self> {
        step_of::<Self>(sequence, t)
    }
}

/// Step `t` of `sequence` with `B`'s own ops.
fn step_of<B: Backend>(sequence: FloatTensor<B>, t: usize) -> FloatTensor<B> {
    let shape = sequence.shape();
    let step = B::float_slice(sequence, &at_step(t));
    B::float_reshape(step, Shape::from([shape[0], shape[2]]))
}

impl<B: Backend + TimeStepOps, C: CheckpointStrategy> TimeStepOps for Autodiff<B, C> {
    fn normlab_time_step(sequence: FloatTensor<Self>, t: usize) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct TimeStepBackward;

        /// The sequence (kept to find its gradient so far), its shape, dtype and device, and
        /// the step.
        type State<B> = (
            FloatTensor<Autodiff<B>>,
            [usize; 3],
            DType,
            <B as burn::backend::BackendTypes>::Device,
            usize,
        );

        impl<B: Backend> Backward<B, 1> for TimeStepBackward {
            type State = State<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let [Some(parent)] = ops.parents else {
                    return;
                };
                let (sequence, [n, steps, features], dtype, device, t) = ops.state;
                // The gradient the other steps have written so far, taken out so that it is
                // written in place; the first step's backward starts it at zero.
                let whole = grads.remove::<B>(&sequence).unwrap_or_else(|| {
                    B::float_zeros(Shape::from([n, steps, features]), &device, dtype.into())
                });
                let at = at_step(t);
                let step = B::float_reshape(grad, Shape::from([n, 1, features]));
                let sum = B::float_add(step, B::float_slice(whole.clone(), &at));
                grads.register::<B>(parent.id, B::float_slice_assign(whole, &at, sum));
            }
        }

        let prepared = TimeStepBackward
            .prepare::<C>([sequence.node()])
            .compute_bound()
            .stateful();
        let kept = sequence.clone();
        let sequence = sequence.into_primitive();
        let shape = sequence.shape();
        let state = (
            kept,
            [shape[0], shape[1], shape[2]],
            sequence.dtype(),
            sequence.device(),
            t,
        );
        let step = B::normlab_time_step(sequence, t);
        match prepared {
            OpsKind::Tracked(prep) => prep.finish(state, step),
            OpsKind::UnTracked(prep) => prep.finish(step),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::prelude::*;
    use burn::tensor::{Distribution, TensorData};

    use super::time_step;

    /// The loss of a recurrence-like use of the steps of `x: [N, T, F]` (each step weighted by
    /// a running product, so every step's gradient differs and depends on the others), taken
    /// with `step`; `x` itself is also used directly, and step `skip` not at all. The gradient
    /// of `x`, as values.
    fn gradient(
        x: &Tensor<3>,
        skip: usize,
        step: impl Fn(Tensor<3>, usize) -> Tensor<2>,
    ) -> TensorData {
        let x = x.clone().require_grad();
        let [n, steps, features] = x.dims();
        let mut state = Tensor::<2>::ones([n, features], &x.device());
        for t in (0..steps).filter(|&t| t != skip) {
            state = (state * step(x.clone(), t)).tanh() + 0.5;
        }
        let loss = state.sum() + (x.clone() * x.clone()).sum() * 1e-3;
        let grads = loss.backward();
        x.grad(&grads).expect("x takes part").into_data()
    }

    #[test]
    fn the_gradient_is_the_slice_s_to_the_bit() {
        let device = Device::flex().autodiff();
        for (shape, skip) in [
            ([3, 5, 7], 2),
            ([1, 1, 1], 9),
            ([2, 1, 16], 9),
            ([4, 9, 33], 0),
            ([32, 28, 256], 27),
        ] {
            let x = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let by_slice = gradient(&x, skip, |x, t| x.slice(s![.., t, ..]).squeeze_dim(1));
            let by_step = gradient(&x, skip, time_step);
            // `assert_eq` on the data compares the bits (NaN aside, which neither has).
            assert_eq!(by_step, by_slice, "{shape:?}, step {skip} unused");
            let values: Vec<f32> = by_step.try_to_vec().unwrap();
            assert!(values.iter().all(|v| v.is_finite()), "{shape:?}");
        }
        // Forward: the step's values.
        let x = Tensor::<3>::random([2, 3, 4], Distribution::Default, &device);
        let expected = x
            .clone()
            .slice(s![.., 1, ..])
            .squeeze_dim::<2>(1)
            .into_data();
        assert_eq!(time_step(x, 1).into_data(), expected);
    }
}
