//! Batch norm in training over rows some of which are padding, as one fused op on the flex
//! (CPU) backend: `x: [R, C]` normalized per channel by the statistics of the rows a host-side
//! mask marks valid (`cpu::masked`), the padded rows written as zeros. A padded sequence's steps
//! are such rows, and so is one step of a recurrence in which some sequences have ended.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;

use super::{FusedNode, NodeGradients, flex};

/// The op, on flex alone (see [`available_on_flex`](super::available_on_flex)). Its backward
/// runs on flex from the autodiff node, so it is no dispatched op.
#[backend_extension(Flex, Autodiff)]
pub(crate) trait MaskedBatchNormOps: Backend {
    /// `x: [R, C]`, `gamma`, `beta`: `[C]` -> `(y: [R, C], mean, var)`, the statistics `[C]`
    /// over the rows `rows` marks valid; `y` is zero on the others.
    fn fused_masked_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        rows: MaskedRows,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Which rows of a masked batch are valid (one or more), and the epsilon added to the
/// variance: the op's settings, kept by its autodiff node for the backward.
#[derive(Debug, Clone)]
pub(crate) struct MaskedRows {
    pub valid: Arc<[bool]>,
    pub epsilon: f64,
}

/// `(x, gamma, var)` -> `(dx, dgamma, dbeta)`.
impl NodeGradients<Flex, 3> for MaskedRows {
    fn gradients(
        self,
        saved: [FloatTensor<Flex>; 3],
        dy: FloatTensor<Flex>,
    ) -> [FloatTensor<Flex>; 3] {
        flex::masked_batch_norm_backward(saved, dy, &self)
    }
}

impl<C: CheckpointStrategy> MaskedBatchNormOps for Autodiff<Flex, C> {
    /// The inner backend's forward, and a [`FusedNode`] that keeps `(x, gamma, var)` when a
    /// gradient is wanted. The statistics are not differentiated.
    fn fused_masked_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        rows: MaskedRows,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prepared = FusedNode(rows.clone())
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let [x, gamma, beta] = [x, gamma, beta].map(|t| t.into_primitive());
        let (y, mean, var) = Flex::fused_masked_batch_norm(x.clone(), gamma.clone(), beta, rows);
        let y = match prepared {
            OpsKind::Tracked(prep) => prep.finish([x, gamma, var.clone()], y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Self::from_inner(mean), Self::from_inner(var))
    }
}

/// Batch norm in training of `x: [R, C]` over the rows `valid` marks (one or more), then
/// `gamma` and `beta`, `[C]` -> `(y, mean, var)`, the statistics `[C]`. Call only where
/// [`available_on_flex`](super::available_on_flex).
pub(crate) fn masked_batch_norm(
    x: Tensor<2>,
    valid: Arc<[bool]>,
    [gamma, beta]: [Tensor<1>; 2],
    epsilon: f64,
) -> (Tensor<2>, Tensor<1>, Tensor<1>) {
    let (y, mean, var) = <Dispatch as MaskedBatchNormOps>::fused_masked_batch_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        MaskedRows { valid, epsilon },
    );
    (
        Tensor::from_dispatch(y),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
    )
}
