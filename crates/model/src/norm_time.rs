//! Timing the norm layers inside a training step, forward and backward, with a timer around
//! the layers themselves rather than by subtracting whole steps.
//!
//! ```ignore
//! let timer = NormTimer::new();
//! let mut instruments = Instruments::none().timing(&timer);
//! let grads = loss(model.forward_instrumented(input, &mut instruments)?).backward();
//! let time = timer.lap();
//! println!("norm layers: {:?} forward, {:?} backward", time.forward, time.backward);
//! ```
//! The forward is timed around the layer's call (flex computes eagerly, so the call's time is
//! the computation's). For the backward, identity ops mark the layer's input and output in the
//! autodiff graph; burn runs the backward steps from the deepest node down, so the time from
//! the output mark's backward to the input mark's is the layer's backward. The marks hold the
//! timer, so the backward pass, which runs after the forward has returned, still reaches it.
//! That bracket is exact for a chain of layers (MLP, CNN); inside a recurrence the steps of
//! other layers at the same depths run inside it, so this module times feed-forward models
//! only. Off flex, only the forward is timed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::prelude::*;

/// Time spent in the norm layers since a [`NormTimer`] started or its last lap.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NormTime {
    /// In the layers' forward calls.
    pub forward: Duration,
    /// In their backward steps (zero off flex, or when no backward ran).
    pub backward: Duration,
    /// How many norm layer calls were timed.
    pub calls: usize,
}

#[derive(Debug, Default)]
struct TimerState {
    time: NormTime,
    /// When the backward of each call's output mark ran, by call.
    backward_started: HashMap<usize, Instant>,
}

/// A timer of norm layers, handed to the forward passes it times through
/// [`Instruments::timing`](crate::Instruments::timing); clones share one time.
#[derive(Debug, Clone, Default)]
pub struct NormTimer {
    state: Arc<Mutex<TimerState>>,
}

impl NormTimer {
    /// A timer at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The time accumulated since the timer started or since the last lap, which starts a
    /// new one.
    pub fn lap(&self) -> NormTime {
        self.with(|state| std::mem::take(&mut state.time))
    }

    fn with<T>(&self, f: impl FnOnce(&mut TimerState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Applies `norm` to `x`, timing it.
    pub(crate) fn time<const D: usize, E>(
        &self,
        x: Tensor<D>,
        norm: impl FnOnce(Tensor<D>) -> Result<Tensor<D>, E>,
    ) -> Result<Tensor<D>, E> {
        let call = self.with(|state| {
            state.time.calls += 1;
            state.time.calls
        });
        let device = x.device();
        let marked =
            device.is_autodiff() && matches!(device.inner().as_dispatch(), DispatchDevice::Flex(_));
        let mark = |x, end| match marked {
            true => self.mark(x, end),
            false => x,
        };
        let x = mark(x, End::Input(call));
        let start = Instant::now();
        let y = norm(x)?;
        let elapsed = start.elapsed();
        self.with(|state| state.time.forward += elapsed);
        Ok(mark(y, End::Output(call)))
    }

    fn mark<const D: usize>(&self, x: Tensor<D>, end: End) -> Tensor<D> {
        let mark = Mark {
            timer: self.clone(),
            end,
        };
        Tensor::from_dispatch(<Dispatch as TimingOps>::normlab_time_mark(
            x.into_dispatch(),
            mark,
        ))
    }
}

/// Which end of which timed call an identity op marks.
#[derive(Debug, Clone, Copy)]
enum End {
    Input(usize),
    Output(usize),
}

/// An end of a timed call, and the timer its backward reports to.
#[derive(Debug, Clone)]
struct Mark {
    timer: NormTimer,
    end: End,
}

impl Mark {
    /// Its backward: the output's runs first, the input's once the layer's steps are done.
    fn reached(&self) {
        let now = Instant::now();
        self.timer.with(|state| match self.end {
            End::Output(call) => {
                state.backward_started.insert(call, now);
            }
            End::Input(call) => {
                if let Some(start) = state.backward_started.remove(&call) {
                    state.time.backward += now - start;
                }
            }
        });
    }
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
                self.0.reached();
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
        let step = |timer: Option<&NormTimer>| {
            let y = match timer {
                Some(timer) => timer.time(x.clone(), |x| norm.forward(x)).unwrap(),
                None => norm.forward(x.clone()).unwrap(),
            };
            let grads = (y.clone() * y).sum().backward();
            x.grad(&grads)
                .unwrap()
                .into_data()
                .iter::<f32>()
                .collect::<Vec<f32>>()
        };
        let plain = step(None);
        let timer = NormTimer::new();
        let measured = step(Some(&timer));
        assert_eq!(measured, plain, "the marks are identities");
        let time = timer.lap();
        assert_eq!(time.calls, 1);
        assert!(time.forward > Duration::ZERO && time.backward > Duration::ZERO);
        // A lap starts a new count.
        assert_eq!(timer.lap(), NormTime::default());
    }
}
