//! Timing the norm layers inside a training step, forward and backward, with a timer around
//! the layers themselves rather than by subtracting whole steps.
//!
//! ```ignore
//! let (grads, time) = norm_time::measure(|| model.forward(input).map(|y| loss(y).backward()));
//! println!("norm layers: {:?} forward, {:?} backward", time.forward, time.backward);
//! ```
//! Every model in this crate passes each norm through [`timed`]; with no measurement running
//! that costs nothing. The forward is timed around the layer's call (flex computes eagerly, so
//! the call's time is the computation's). For the backward, identity ops mark the layer's input
//! and output in the autodiff graph; burn runs the backward steps from the deepest node down,
//! so the time from the output mark's backward to the input mark's is the layer's backward.
//! That bracket is exact for a chain of layers (MLP, CNN); inside a recurrence the steps of
//! other layers at the same depths run inside it, so this module times feed-forward models
//! only. Off flex, only the forward is timed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::prelude::*;

/// Time spent in the norm layers during one [`measure`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NormTime {
    /// In the layers' forward calls.
    pub forward: Duration,
    /// In their backward steps (zero off flex, or when no backward ran).
    pub backward: Duration,
    /// How many norm layer calls were timed.
    pub calls: usize,
}

#[derive(Default)]
struct Timer {
    time: NormTime,
    /// When the backward of each call's output mark ran, by call.
    backward_started: HashMap<usize, Instant>,
}

thread_local! {
    static TIMER: RefCell<Option<Timer>> = const { RefCell::new(None) };
}

/// Runs `step` (a forward and, usually, its backward) and returns its result with the time the
/// norm layers took in it. Measurements do not nest: an inner one takes over.
pub fn measure<T>(step: impl FnOnce() -> T) -> (T, NormTime) {
    let previous = TIMER.with(|t| t.borrow_mut().replace(Timer::default()));
    let out = step();
    let timer = TIMER.with(|t| std::mem::replace(&mut *t.borrow_mut(), previous));
    (out, timer.map(|t| t.time).unwrap_or_default())
}

/// The time accumulated since the running measurement began or since the last lap, which
/// starts a new one; zero outside a measurement.
pub fn lap() -> NormTime {
    TIMER.with(|t| {
        t.borrow_mut()
            .as_mut()
            .map(|timer| std::mem::take(&mut timer.time))
            .unwrap_or_default()
    })
}

/// Applies `norm` to `x`, timing it when a measurement is running.
pub(crate) fn timed<const D: usize, E>(
    x: Tensor<D>,
    norm: impl FnOnce(Tensor<D>) -> Result<Tensor<D>, E>,
) -> Result<Tensor<D>, E> {
    let call = TIMER.with(|t| {
        t.borrow_mut().as_mut().map(|timer| {
            timer.time.calls += 1;
            timer.time.calls
        })
    });
    let Some(call) = call else {
        return norm(x);
    };
    let device = x.device();
    let marked =
        device.is_autodiff() && matches!(device.inner().as_dispatch(), DispatchDevice::Flex(_));
    let x = if marked {
        mark(x, Mark::Input(call))
    } else {
        x
    };
    let start = Instant::now();
    let y = norm(x)?;
    let elapsed = start.elapsed();
    with_timer(|timer| timer.time.forward += elapsed);
    Ok(if marked {
        mark(y, Mark::Output(call))
    } else {
        y
    })
}

fn with_timer(f: impl FnOnce(&mut Timer)) {
    TIMER.with(|t| {
        if let Some(timer) = t.borrow_mut().as_mut() {
            f(timer)
        }
    });
}

/// Which end of which timed call an identity op marks.
#[derive(Debug, Clone, Copy)]
enum Mark {
    Input(usize),
    Output(usize),
}

/// Its backward: the output's runs first, the input's once the layer's steps are done.
fn reached(mark: Mark) {
    let now = Instant::now();
    with_timer(|timer| match mark {
        Mark::Output(call) => {
            timer.backward_started.insert(call, now);
        }
        Mark::Input(call) => {
            if let Some(start) = timer.backward_started.remove(&call) {
                timer.time.backward += now - start;
            }
        }
    });
}

fn mark<const D: usize>(x: Tensor<D>, mark: Mark) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as TimingOps>::normlab_time_mark(
        x.into_dispatch(),
        mark,
    ))
}

/// The identity, as a backend op whose backward notes when it ran.
#[backend_extension(Flex, Autodiff)]
trait TimingOps: Backend {
    fn normlab_time_mark(x: FloatTensor<Self>, mark: Mark) -> FloatTensor<Self>;
}

impl TimingOps for Flex {
    fn normlab_time_mark(x: FloatTensor<Self>, _: Mark) -> FloatTensor<Self> {
        x
    }
}

impl<B: Backend + TimingOps, C: CheckpointStrategy> TimingOps for Autodiff<B, C> {
    fn normlab_time_mark(x: FloatTensor<Self>, mark: Mark) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct MarkBackward(Mark);

        impl<B: Backend> Backward<B, 1> for MarkBackward {
            type State = ();

            fn backward(self, ops: Ops<(), 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                reached(self.0);
                let grad = grads.consume::<B>(&ops.node);
                if let [Some(parent)] = ops.parents {
                    grads.register::<B>(parent.id, grad);
                }
            }
        }

        // Nothing to keep: the backward passes the gradient through unchanged.
        MarkBackward(mark)
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateless(x.into_primitive())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use normlab_norm::NormConfig;

    #[test]
    fn norm_layers_are_timed_forward_and_backward_without_changing_the_step() {
        let device = Device::flex().autodiff();
        let config: NormConfig = serde_json::from_str(r#"{"kind": "layer"}"#).unwrap();
        let norm = config.init(64, &device).unwrap();
        let x = Tensor::<3>::random([64, 64, 256], Distribution::Default, &device).require_grad();
        let step = || {
            let y = timed(x.clone(), |x| norm.forward(x)).unwrap();
            let grads = (y.clone() * y).sum().backward();
            x.grad(&grads)
                .unwrap()
                .into_data()
                .iter::<f32>()
                .collect::<Vec<f32>>()
        };
        let plain = step();
        let (measured, time) = measure(step);
        assert_eq!(measured, plain, "the marks are identities");
        assert_eq!(time.calls, 1);
        assert!(time.forward > Duration::ZERO && time.backward > Duration::ZERO);
        // Nothing is recorded outside a measurement.
        let (_, idle) = measure(|| ());
        assert_eq!(idle, NormTime::default());
    }
}
