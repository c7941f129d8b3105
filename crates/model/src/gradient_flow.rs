//! How far a loss's gradient reaches back through a recurrence: the norm of `dLoss/dh_t` at
//! every step `t`, as in recurrent BN's Figure 1 (Cooijmans et al. 2017), where batch norm with
//! `gamma = 1` lets it vanish and `gamma = 0.1` keeps it alive.
//!
//! ```ignore
//! let norms = gradient_flow::measure(|| Ok(loss(model.forward(input)?, targets)))?;
//! ```
//! While a measurement runs, every recurrent layer adds to its hidden state after each step a
//! zero tensor that requires a gradient: the gradient of that tensor is the gradient of the loss
//! with respect to the state, through every later step. Outside a measurement nothing is added.

use std::cell::RefCell;

use burn::prelude::*;

thread_local! {
    /// The taps of the layer that ran last, in step order, while a measurement runs.
    static TAPS: RefCell<Option<Vec<Tensor<2>>>> = const { RefCell::new(None) };
}

/// Runs `loss` (forward passes and a scalar loss, on an autodiff device), back-propagates it
/// and returns, for every step `t` of the last recurrent layer it ran, the gradient's norm per
/// sequence averaged over the batch: `mean_n ||dLoss/dh_t[n]||`. Empty if no recurrent layer
/// ran. Measurements do not nest.
pub fn measure<E>(loss: impl FnOnce() -> Result<Tensor<1>, E>) -> Result<Vec<f32>, E> {
    TAPS.with(|taps| *taps.borrow_mut() = Some(Vec::new()));
    let loss = loss();
    let taps = TAPS
        .with(|taps| taps.borrow_mut().take())
        .unwrap_or_default();
    let grads = loss?.backward();
    Ok(taps
        .iter()
        .map(|tap| match tap.grad(&grads) {
            Some(grad) => grad.square().sum_dim(1).sqrt().mean().into_scalar::<f32>(),
            // The state of this step never reached the loss.
            None => 0.0,
        })
        .collect())
}

/// A recurrent layer starts: the taps of a layer before it are dropped, so that a measurement
/// sees the last layer's states.
pub(crate) fn layer_starts() {
    TAPS.with(|taps| {
        if let Some(taps) = taps.borrow_mut().as_mut() {
            taps.clear();
        }
    });
}

/// The state `h: [N, hidden]` of one step, with a tap on it while a measurement runs.
pub(crate) fn tap(h: Tensor<2>) -> Tensor<2> {
    TAPS.with(|taps| match taps.borrow_mut().as_mut() {
        Some(taps) => {
            let zero = Tensor::zeros(h.dims(), &h.device()).require_grad();
            taps.push(zero.clone());
            h + zero
        }
        None => h,
    })
}
