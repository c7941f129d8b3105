//! Batch renormalization in training as one fused op on the flex (CPU) backend
//! (`cpu::renorm`): the batch statistics, the corrections `r` and `d` towards the moving
//! statistics and the output in batch norm's two passes, where the composed layer added a
//! scale and a shift over the whole activation, forward and backward.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;

use super::{FusedNode, NodeGradients, flex};

/// The op, on flex alone (see [`available_on_flex`](super::available_on_flex)). Its backward
/// runs on flex from the autodiff node, so it is no dispatched op.
#[backend_extension(Flex, Autodiff)]
pub(crate) trait BatchRenormOps: Backend {
    /// `x: [N, C, S]`, `gamma`, `beta`: `[C]`, `moving`: `[2 * C]` (the moving mean, then the
    /// moving standard deviation) -> `(y, stats)`, `stats` the batch mean, the batch's biased
    /// variance, `r` and `d`, each `[C]`, one after another. No gradient reaches `moving`.
    fn fused_batch_renorm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        moving: FloatTensor<Self>,
        renorm: Renorm,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// The op's settings: the bounds `r_max` and `d_max` of this step, and the epsilon added to
/// the batch variance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Renorm {
    pub r_max: f64,
    pub d_max: f64,
    pub epsilon: f64,
}

/// `(x, gamma, stats)` -> `(dx, dgamma, dbeta)`.
impl NodeGradients<Flex, 3> for Renorm {
    fn gradients(
        self,
        saved: [FloatTensor<Flex>; 3],
        dy: FloatTensor<Flex>,
    ) -> [FloatTensor<Flex>; 3] {
        flex::batch_renorm_backward(saved, dy, self)
    }
}

impl<C: CheckpointStrategy> BatchRenormOps for Autodiff<Flex, C> {
    /// The inner backend's forward, and a [`FusedNode`] that keeps `(x, gamma, stats)` when a
    /// gradient is wanted. The statistics are not differentiated.
    fn fused_batch_renorm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        moving: FloatTensor<Self>,
        renorm: Renorm,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let prepared = FusedNode(renorm)
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let [x, gamma, beta, moving] = [x, gamma, beta, moving].map(|t| t.into_primitive());
        let (y, stats) = Flex::fused_batch_renorm(x.clone(), gamma.clone(), beta, moving, renorm);
        let y = match prepared {
            OpsKind::Tracked(prep) => prep.finish([x, gamma, stats.clone()], y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Self::from_inner(stats))
    }
}

/// The output of batch renormalization in training of `x: [N, C, S]` (every element real) and
/// the batch's mean and biased variance, `[C]`, detached. `moving` is the moving mean and
/// standard deviation, `[C]` each. Call only where
/// [`available_on_flex`](super::available_on_flex).
pub(crate) fn batch_renorm(
    x: Tensor<3>,
    [gamma, beta]: [Tensor<1>; 2],
    [mu, sigma]: [Tensor<1>; 2],
    renorm: Renorm,
) -> (Tensor<3>, Tensor<1>, Tensor<1>) {
    let c = x.dims()[1];
    let moving = Tensor::cat(vec![mu, sigma], 0).detach();
    let (y, stats) = <Dispatch as BatchRenormOps>::fused_batch_renorm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        moving.into_dispatch(),
        renorm,
    );
    let stats = Tensor::<1>::from_dispatch(stats).detach();
    let stat = |k: usize| stats.clone().slice(s![k * c..(k + 1) * c]);
    (Tensor::from_dispatch(y), stat(0), stat(1))
}
