//! The time steps of a sequence, with one gradient for the whole sequence.
//!
//! A recurrent layer computes `Wx x` for the whole sequence at once and takes its steps out one
//! by one. Taken with burn's `slice`, each step's backward zero-fills a gradient the size of the
//! whole sequence and adds it to the others': `T` full-size passes for `T` steps, a sixth of an
//! LSTM's training step at batch 32. Here the steps hang from one node, `gather`, an identity on
//! the sequence: each step's backward adds its gradient into one buffer that the steps share,
//! in place at its step, and `gather`'s backward, which autodiff runs after all of its
//! children's, hands the buffer to the sequence. The sums are the same (`0 + g`, in the same
//! order), so the numbers are too. The buffer holds no autodiff tensor, so a graph that is never
//! differentiated (a forward pass only) is freed as any other.

use std::any::Any;
use std::sync::{Arc, Mutex};

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

/// The `T` steps of `sequence: [N, T, F]`, each `[N, F]`, differentiable.
///
/// On flex their backward writes into one gradient of the sequence; elsewhere they are burn's
/// `slice`s.
pub(crate) fn time_steps(sequence: Tensor<3>) -> Vec<Tensor<2>> {
    steps_sharing(sequence, StepGradient::default())
}

/// [`time_steps`], their gradient written into `gradient`.
fn steps_sharing(sequence: Tensor<3>, gradient: StepGradient) -> Vec<Tensor<2>> {
    let [_, steps, _] = sequence.dims();
    let on_flex = matches!(
        sequence.device().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    );
    if !on_flex {
        let step = |t| sequence.clone().slice(s![.., t, ..]).squeeze_dim::<2>(1);
        return (0..steps).map(step).collect();
    }
    let gathered =
        <Dispatch as TimeStepOps>::normlab_gather(sequence.into_dispatch(), gradient.clone());
    (0..steps)
        .map(|t| {
            let step =
                <Dispatch as TimeStepOps>::normlab_time_step(gathered.clone(), t, gradient.clone());
            Tensor::from_dispatch(step)
        })
        .collect()
}

/// The gradient of a whole sequence that its steps' backwards write into: an inner backend's
/// float tensor, once the first of them has run.
#[derive(Clone, Default)]
pub(crate) struct StepGradient(Arc<Mutex<Option<Box<dyn Any + Send>>>>);

impl std::fmt::Debug for StepGradient {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("StepGradient")
    }
}

impl StepGradient {
    /// Takes the gradient out, if any step has written one.
    fn take<B: Backend>(&self) -> Option<FloatTensor<B>> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let taken = slot.take()?;
        Some(*taken.downcast().expect("one backend per graph"))
    }

    fn put<B: Backend>(&self, gradient: FloatTensor<B>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(gradient));
    }
}

/// The slices that pick step `t` of a `[N, T, F]` tensor.
fn at_step(t: usize) -> [Slice; 3] {
    [
        Slice::full(),
        Slice::new(t as isize, Some(t as isize + 1), 1),
        Slice::full(),
    ]
}

/// The steps as backend ops.
#[backend_extension(Flex, Autodiff)]
pub(crate) trait TimeStepOps: Backend {
    /// The sequence itself: the node its steps hang from (see [`time_steps`]).
    fn normlab_gather(sequence: FloatTensor<Self>, gradient: StepGradient) -> FloatTensor<Self>;

    /// Step `t` of the gathered sequence.
    fn normlab_time_step(
        gathered: FloatTensor<Self>,
        t: usize,
        gradient: StepGradient,
    ) -> FloatTensor<Self>;
}

impl TimeStepOps for Flex {
    fn normlab_gather(sequence: FloatTensor<Self>, _: StepGradient) -> FloatTensor<Self> {
        sequence
    }

    fn normlab_time_step(
        gathered: FloatTensor<Self>,
        t: usize,
        _: StepGradient,
    ) -> FloatTensor<Self> {
        step_of::<Self>(gathered, t)
    }
}

/// Step `t` of `sequence` with `B`'s own ops.
fn step_of<B: Backend>(sequence: FloatTensor<B>, t: usize) -> FloatTensor<B> {
    let shape = sequence.shape();
    let step = B::float_slice(sequence, &at_step(t));
    B::float_reshape(step, Shape::from([shape[0], shape[2]]))
}

impl<B: Backend + TimeStepOps, C: CheckpointStrategy> TimeStepOps for Autodiff<B, C> {
    fn normlab_gather(sequence: FloatTensor<Self>, gradient: StepGradient) -> FloatTensor<Self> {
        /// Hands the steps' gradient to the sequence, after every step's backward.
        #[derive(Debug)]
        struct GatherBackward;

        impl<B: Backend> Backward<B, 1> for GatherBackward {
            type State = StepGradient;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                if let ([Some(parent)], Some(whole)) = (ops.parents, ops.state.take::<B>()) {
                    grads.register::<B>(parent.id, whole);
                }
            }
        }

        let prepared = GatherBackward
            .prepare::<C>([sequence.node()])
            .compute_bound()
            .stateful();
        let sequence = sequence.into_primitive();
        match prepared {
            OpsKind::Tracked(prep) => prep.finish(gradient, sequence),
            OpsKind::UnTracked(prep) => prep.finish(sequence),
        }
    }

    fn normlab_time_step(
        gathered: FloatTensor<Self>,
        t: usize,
        gradient: StepGradient,
    ) -> FloatTensor<Self> {
        /// Adds the step's gradient into the sequence's, registering nothing itself.
        #[derive(Debug)]
        struct TimeStepBackward;

        impl<B: Backend> Backward<B, 1> for TimeStepBackward {
            /// The shared gradient, the sequence's `[N, T, F]`, dtype and device, the step.
            type State = (StepGradient, [usize; 3], DType, B::Device, usize);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let (gradient, [n, steps, features], dtype, device, t) = ops.state;
                // Taken out so that it is written in place; the first step's backward starts
                // it at zero.
                let whole = gradient.take::<B>().unwrap_or_else(|| {
                    B::float_zeros(Shape::from([n, steps, features]), &device, dtype.into())
                });
                let at = at_step(t);
                let step = B::float_reshape(grad, Shape::from([n, 1, features]));
                let sum = B::float_add(step, B::float_slice(whole.clone(), &at));
                gradient.put::<B>(B::float_slice_assign(whole, &at, sum));
            }
        }

        let prepared = TimeStepBackward
            .prepare::<C>([gathered.node()])
            .compute_bound()
            .stateful();
        let gathered = gathered.into_primitive();
        let shape = gathered.shape();
        let state = (
            gradient.clone(),
            [shape[0], shape[1], shape[2]],
            gathered.dtype(),
            gathered.device(),
            t,
        );
        let step = B::normlab_time_step(gathered, t, gradient);
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

    use std::sync::Arc;

    use super::{StepGradient, steps_sharing, time_steps};

    /// The loss of a recurrence-like use of the steps of `x: [N, T, F]` (each step weighted by
    /// a running product, so every step's gradient differs and depends on the others), taken
    /// with `step`; `x` itself is also used directly, and step `skip` not at all. The gradient
    /// of `x`, as values.
    fn gradient(
        x: &Tensor<3>,
        skip: usize,
        split: impl Fn(Tensor<3>) -> Vec<Tensor<2>>,
    ) -> TensorData {
        let x = x.clone().require_grad();
        let [n, _, features] = x.dims();
        let mut state = Tensor::<2>::ones([n, features], &x.device());
        for (t, step) in split(x.clone()).into_iter().enumerate() {
            if t != skip {
                state = (state * step).tanh() + 0.5;
            }
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
            let slices = |x: Tensor<3>| -> Vec<Tensor<2>> {
                let step = |t| x.clone().slice(s![.., t, ..]).squeeze_dim(1);
                (0..shape[1]).map(step).collect()
            };
            let by_slice = gradient(&x, skip, slices);
            let by_step = gradient(&x, skip, time_steps);
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
        assert_eq!(time_steps(x).swap_remove(1).into_data(), expected);
    }

    #[test]
    fn a_graph_never_differentiated_is_freed() {
        // The ops' states hold the shared gradient and nothing of the graph: a forward pass that
        // is dropped undifferentiated (a dry run) leaves no node behind. Holding an autodiff
        // tensor in a state kept such graphs, and every later backward scanned them.
        let device = Device::flex().autodiff();
        let gradient = StepGradient::default();
        let x = Tensor::<3>::random([2, 4, 3], Distribution::Default, &device).require_grad();
        let steps = steps_sharing(x.clone() * 2.0, gradient.clone());
        let _ = steps[1].clone().sum().into_scalar::<f32>();
        assert!(Arc::strong_count(&gradient.0) > 1, "the graph holds it");
        drop(steps);
        drop(x);
        // Burn frees orphaned graphs when a backward runs.
        let other = Tensor::<1>::ones([3], &device).require_grad();
        let _ = (other.clone() * other).sum().backward();
        assert_eq!(Arc::strong_count(&gradient.0), 1, "the graph is freed");
    }
}
