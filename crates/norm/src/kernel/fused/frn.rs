//! FRN's normalization with a learned epsilon as one fused op on the flex (CPU) backend:
//! `y = x / sqrt(nu2 + epsilon + |eps_l|) * gamma + beta`, `nu2` the mean square of each
//! (sample, channel). The forward and the gradients of `x`, `gamma` and `beta` are group norm's
//! kernels (one group per channel, not centred) with the epsilon read from `eps_l`; the gradient
//! of `eps_l` is `sign(eps_l) * Σ_rows -rstd^3 / 2 * gamma * Σ dy x`, one more pass over `x` and
//! `dy`.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, backend_extension};
use burn::prelude::*;

use super::{FusedNode, NodeGradients, untracked_gradients};

/// The op, on flex alone (see [`available_on_flex`](super::available_on_flex)).
#[backend_extension(Flex, Autodiff)]
pub(crate) trait LearnedEpsilonOps: Backend {
    /// `x: [N, C, S]`, `gamma`, `beta`: `[C]`, `eps_l`: `[1]` -> `(y, nu2)`, `nu2` per (sample,
    /// channel), `[N * C]`.
    fn fused_frn_learned_epsilon(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps_l: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `(dx, dgamma, dbeta, d eps_l)` of
    /// [`fused_frn_learned_epsilon`](LearnedEpsilonOps::fused_frn_learned_epsilon).
    #[allow(clippy::type_complexity)]
    fn fused_frn_learned_epsilon_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        nu2: FloatTensor<Self>,
        eps_l: FloatTensor<Self>,
        epsilon: f64,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    );
}

/// The op's settings for its autodiff node: the fixed part of epsilon.
#[derive(Debug, Clone, Copy)]
struct LearnedEpsilon(f64);

/// `(x, gamma, nu2, eps_l)` -> `(dx, dgamma, dbeta, d eps_l)`.
impl<B: LearnedEpsilonOps> NodeGradients<B, 4> for LearnedEpsilon {
    fn gradients(
        self,
        [x, gamma, nu2, eps_l]: [FloatTensor<B>; 4],
        dy: FloatTensor<B>,
    ) -> [FloatTensor<B>; 4] {
        let (dx, dgamma, dbeta, deps) =
            B::fused_frn_learned_epsilon_backward(x, dy, gamma, nu2, eps_l, self.0);
        [dx, dgamma, dbeta, deps]
    }
}

impl<B: Backend + LearnedEpsilonOps, C: CheckpointStrategy> LearnedEpsilonOps for Autodiff<B, C> {
    fn fused_frn_learned_epsilon(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps_l: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let prepared = FusedNode(LearnedEpsilon(epsilon))
            .prepare::<C>([x.node(), gamma.node(), beta.node(), eps_l.node()])
            .compute_bound()
            .stateful();
        let [x, gamma, beta, eps_l] = [x, gamma, beta, eps_l].map(|t| t.into_primitive());
        let (y, nu2) =
            B::fused_frn_learned_epsilon(x.clone(), gamma.clone(), beta, eps_l.clone(), epsilon);
        let y = match prepared {
            OpsKind::Tracked(prep) => prep.finish([x, gamma, nu2.clone(), eps_l], y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Self::from_inner(nu2))
    }

    /// Computed on the inner backend, and not differentiated again.
    fn fused_frn_learned_epsilon_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        nu2: FloatTensor<Self>,
        eps_l: FloatTensor<Self>,
        epsilon: f64,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let saved = [x, gamma, nu2, eps_l];
        let [dx, dgamma, dbeta, deps] =
            untracked_gradients::<B, C, _, 4>(LearnedEpsilon(epsilon), saved, dy);
        (dx, dgamma, dbeta, deps)
    }
}

/// FRN's normalization of `x: [N, C, S]` (every element real) with the epsilon
/// `epsilon + |eps_l|`, then `gamma` and `beta`. Call only where
/// [`available_on_flex`](super::available_on_flex).
pub(crate) fn frn_learned_epsilon(
    x: Tensor<3>,
    [gamma, beta, eps_l]: [Tensor<1>; 3],
    epsilon: f64,
) -> Tensor<3> {
    let (y, _) = <Dispatch as LearnedEpsilonOps>::fused_frn_learned_epsilon(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        eps_l.into_dispatch(),
        epsilon,
    );
    Tensor::from_dispatch(y)
}
