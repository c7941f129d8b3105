//! What a forward pass measures beside computing its output, passed to it explicitly:
//! activation statistics at every norm site ([`probe`](crate::probe)), the time of the norm
//! layers ([`norm_time`](crate::norm_time)), and taps on the hidden states of a recurrence
//! ([`gradient_flow`](crate::gradient_flow)). [`Instruments::none`] measures nothing and costs
//! nothing; [`Network::forward`](crate::Network::forward) uses it.

use burn::prelude::*;
use burn::tensor::Gradients;

use crate::gradient_flow::Taps;
use crate::norm_time::NormTimer;
use crate::probe::{Recorder, SiteStats};

/// The measurements one forward pass takes; see the module doc.
#[derive(Debug, Clone, Default)]
pub struct Instruments {
    probe: Option<Recorder>,
    timer: Option<NormTimer>,
    taps: Option<Taps>,
}

impl Instruments {
    /// Measures nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Also records the mean, standard deviation and the 15th/50th/85th percentiles of the
    /// first `units` units before and after every norm site.
    pub fn probing(mut self, units: usize) -> Self {
        self.probe = Some(Recorder {
            units,
            sites: Vec::new(),
        });
        self
    }

    /// Also times every norm layer, forward and backward, on `timer`.
    pub fn timing(mut self, timer: &NormTimer) -> Self {
        self.timer = Some(timer.clone());
        self
    }

    /// Also taps the hidden state of every step of the last recurrent layer, for
    /// [`gradient_norms`](Instruments::gradient_norms).
    pub fn tapping_gradients(mut self) -> Self {
        self.taps = Some(Taps::default());
        self
    }

    /// The norm sites probed so far, in the order the forward passes met them; `None` unless
    /// [`probing`](Instruments::probing). Probing goes on with an empty list.
    pub fn take_probe(&mut self) -> Option<Vec<SiteStats>> {
        self.probe
            .as_mut()
            .map(|probe| std::mem::take(&mut probe.sites))
    }

    /// For every step `t` of the last recurrent layer tapped, the norm of the loss's gradient
    /// with respect to its hidden state, per sequence, averaged over the batch:
    /// `mean_n ||dLoss/dh_t[n]||`, given the gradients of the loss. Empty unless
    /// [`tapping_gradients`](Instruments::tapping_gradients) and a recurrent layer ran.
    pub fn gradient_norms(&self, grads: &Gradients) -> Vec<f32> {
        self.taps
            .as_ref()
            .map(|taps| taps.norms(grads))
            .unwrap_or_default()
    }

    /// Applies `norm` to `x` at `site` (named only when recorded), with the probe and the
    /// timer around it. `unit_axis` is the axis whose entries are the units.
    pub(crate) fn norm_site<const D: usize, E>(
        &mut self,
        site: impl FnOnce() -> String,
        unit_axis: usize,
        x: Tensor<D>,
        norm: impl FnOnce(Tensor<D>) -> Result<Tensor<D>, E>,
    ) -> Result<Tensor<D>, E> {
        let timer = self.timer.clone();
        let timed = |x| match &timer {
            Some(timer) => timer.time(x, norm),
            None => norm(x),
        };
        let Some(probe) = &mut self.probe else {
            return timed(x);
        };
        let before = probe.summarize(&x, unit_axis);
        let y = timed(x)?;
        probe.record(site(), before, &y, unit_axis);
        Ok(y)
    }

    /// A recurrent layer starts: only the last layer's states are tapped.
    pub(crate) fn recurrent_layer_starts(&mut self) {
        if let Some(taps) = &mut self.taps {
            taps.layer_starts();
        }
    }

    /// The hidden state `h: [N, hidden]` of one step, tapped when asked.
    pub(crate) fn hidden_state(&mut self, h: Tensor<2>) -> Tensor<2> {
        match &mut self.taps {
            Some(taps) => taps.tap(h),
            None => h,
        }
    }
}
