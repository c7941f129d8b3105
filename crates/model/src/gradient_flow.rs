//! How far a loss's gradient reaches back through a recurrence: the norm of `dLoss/dh_t` at
//! every step `t`, as in recurrent BN's Figure 1 (Cooijmans et al. 2017).
//!
//! ```ignore
//! let mut instruments = Instruments::none().tapping_gradients();
//! let logits = model.forward_instrumented(input, &mut instruments)?;
//! let norms = instruments.gradient_norms(&loss(logits).backward());
//! ```
//! With taps on, every recurrent layer adds to its hidden state after each step a zero tensor
//! that requires a gradient: the gradient of that tensor is the gradient of the loss with
//! respect to the state, through every later step.

use burn::prelude::*;
use burn::tensor::Gradients;

/// The taps of the recurrent layer that ran last, in step order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Taps {
    taps: Vec<Tensor<2>>,
}

impl Taps {
    /// A recurrent layer starts: the taps of a layer before it are dropped, so that the
    /// measurement sees the last layer's states.
    pub fn layer_starts(&mut self) {
        self.taps.clear();
    }

    /// The state `h: [N, hidden]` of one step, with a tap on it.
    pub fn tap(&mut self, h: Tensor<2>) -> Tensor<2> {
        let zero = Tensor::zeros(h.dims(), &h.device()).require_grad();
        self.taps.push(zero.clone());
        h + zero
    }

    /// For every step, the gradient's norm per sequence averaged over the batch:
    /// `mean_n ||dLoss/dh_t[n]||`; 0 for a state that never reached the loss.
    pub fn norms(&self, grads: &Gradients) -> Vec<f32> {
        self.taps
            .iter()
            .map(|tap| match tap.grad(grads) {
                Some(grad) => grad.square().sum_dim(1).sqrt().mean().into_scalar::<f32>(),
                None => 0.0,
            })
            .collect()
    }
}
