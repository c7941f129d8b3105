//! FRN with its thresholded linear unit as one fused op on the flex (CPU) backend (`cpu::frn`):
//! `y = max(x / sqrt(nu2 + epsilon + |eps_l|) * gamma + beta, tau)`, `nu2` the mean square of
//! each (sample, channel), `eps_l` the learned part of the epsilon (0 where none is learned).
//! The composed layer ran group norm's kernel, then the unit as three more ops each way.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;

use super::flex;

/// The op, on flex alone (see [`available_on_flex`](super::available_on_flex)). Its backward
/// runs on flex from the autodiff node, so it is no dispatched op.
#[backend_extension(Flex, Autodiff)]
pub(crate) trait FrnOps: Backend {
    /// `x: [N, C, S]`, `gamma`, `beta`, `tau`: `[C]`, `eps_l`: `[1]` -> `(y, nu2)`, `nu2` per
    /// (sample, channel), `[N * C]`.
    fn fused_frn(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        tau: FloatTensor<Self>,
        eps_l: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// The autodiff node: the fixed epsilon, and `(x, gamma, beta, tau, nu2, eps_l)` kept for the
/// gradients of the five parents `(x, gamma, beta, tau, eps_l)`.
#[derive(Debug)]
struct FrnBackward(f64);

/// `(dx, dgamma, dbeta, dtau, d eps_l)`, `(x, gamma, beta, tau, nu2, eps_l)` kept.
impl Backward<Flex, 5> for FrnBackward {
    type State = [FloatTensor<Flex>; 6];

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let gradients = flex::frn_backward(ops.state, dy, self.0);
        for (parent, grad) in ops.parents.into_iter().zip(gradients) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

impl<C: CheckpointStrategy> FrnOps for Autodiff<Flex, C> {
    /// The inner backend's forward, and a [`FrnBackward`] node when a gradient is wanted.
    fn fused_frn(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        tau: FloatTensor<Self>,
        eps_l: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let parents = [
            x.node(),
            gamma.node(),
            beta.node(),
            tau.node(),
            eps_l.node(),
        ];
        let prepared = FrnBackward(epsilon)
            .prepare::<C>(parents)
            .compute_bound()
            .stateful();
        let [x, gamma, beta, tau, eps_l] = [x, gamma, beta, tau, eps_l].map(|t| t.into_primitive());
        let (y, nu2) = Flex::fused_frn(
            x.clone(),
            gamma.clone(),
            beta.clone(),
            tau.clone(),
            eps_l.clone(),
            epsilon,
        );
        let y = match prepared {
            OpsKind::Tracked(prep) => prep.finish([x, gamma, beta, tau, nu2.clone(), eps_l], y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Self::from_inner(nu2))
    }
}

/// FRN of `x: [N, C, S]` (every element real) with the epsilon `epsilon + |eps_l|`, then
/// `gamma`, `beta` and the unit's threshold `tau`. Call only where
/// [`available_on_flex`](super::available_on_flex).
pub(crate) fn frn(
    x: Tensor<3>,
    [gamma, beta, tau]: [Tensor<1>; 3],
    eps_l: Tensor<1>,
    epsilon: f64,
) -> Tensor<3> {
    let (y, _) = <Dispatch as FrnOps>::fused_frn(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        tau.into_dispatch(),
        eps_l.into_dispatch(),
        epsilon,
    );
    Tensor::from_dispatch(y)
}
