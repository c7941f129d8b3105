//! Fused norm kernels as burn custom ops: one op per computation (group norm and its special
//! cases, batch norm in training, a per-channel affine map) with a hand-written backward, so
//! that a norm layer costs two passes over its activation forward and two backward instead of a
//! dozen composed ops. The kernels run on the flex (CPU) backend (`flex`, `cpu`) and, with the
//! `wgpu` feature, on burn's CubeCL backends (`cube`); [`available`] says when the seam may use
//! them.

mod cpu;
#[cfg(feature = "wgpu")]
mod cube;
mod flex;
mod simd;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, backend_extension,
};
use burn::prelude::*;
use burn::tensor::DType;

use crate::Kernels;

/// True when `kernels` asks for the fused kernels and `x` lives on a backend with them (with or
/// without autodiff) in a float type they handle: f32 or f64 on flex, f32 on the CubeCL backends
/// (f64 is optional in GPU shaders).
pub(crate) fn available(x: &Tensor<3>, kernels: Kernels) -> bool {
    let on_backend = match x.device().inner().as_dispatch() {
        DispatchDevice::Flex(_) => matches!(x.dtype(), DType::F32 | DType::F64),
        #[cfg(feature = "wgpu")]
        DispatchDevice::Cube(_) => x.dtype() == DType::F32,
        #[allow(unreachable_patterns)] // flex alone
        _ => false,
    };
    kernels == Kernels::Fastest && on_backend
}

/// The fused ops. Every method has a twin `_backward`; the autodiff implementation wires them.
/// On the CubeCL backends they run lazily through burn's fusion backend, which needs each
/// output's shape up front (`cube::shapes`).
#[backend_extension(
    Flex,
    Cube: cfg(feature = "wgpu"),
    Fusion: cfg(feature = "wgpu"),
    Autodiff
)]
pub(crate) trait FusedNormOps: Backend {
    /// Group norm of `x: [N, C, S]` -> `(y, mean, var)`, the statistics `[N * groups]`.
    #[fusion(meta = |x, _gamma, _beta, groups, _center, _epsilon| cube::shapes::group_norm(x, *groups))]
    fn fused_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        center: bool,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `(dx, dgamma, dbeta)` of [`fused_group_norm`](FusedNormOps::fused_group_norm).
    #[fusion(meta = |x, _dy, gamma, _var, _groups, _center, _epsilon| cube::shapes::channel_pair(x, gamma))]
    fn fused_group_norm_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        var: FloatTensor<Self>,
        groups: usize,
        center: bool,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Batch norm in training of `x: [N, C, S]` over virtual batches of `ghost` samples (at
    /// least 1; `N` or more: the whole batch), cut as [`ghost_chunks`](crate::kernel::ghost_chunks)
    /// cuts them -> `(y, mean, var)`, the statistics `[C]` per virtual batch, one after another.
    #[fusion(meta = |x, gamma, _beta, ghost, _epsilon| cube::shapes::batch_norm(x, gamma, *ghost))]
    fn fused_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        ghost: usize,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `(dx, dgamma, dbeta)` of [`fused_batch_norm`](FusedNormOps::fused_batch_norm), the
    /// parameter gradients added up over the virtual batches.
    #[fusion(meta = |x, _dy, gamma, _var, _ghost, _epsilon| cube::shapes::channel_pair(x, gamma))]
    fn fused_batch_norm_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        var: FloatTensor<Self>,
        ghost: usize,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `(x - centre[c]) * scale[c] + shift[c]` of `x: [N, C, S]`; no gradient reaches the
    /// centre.
    #[fusion(dtype = x, shape = x)]
    fn fused_channel_affine(
        x: FloatTensor<Self>,
        centre: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// `(dx, dscale, dshift)` of [`fused_channel_affine`](FusedNormOps::fused_channel_affine).
    #[fusion(meta = |x, _dy, _centre, scale| cube::shapes::channel_pair(x, scale))]
    fn fused_channel_affine_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        centre: FloatTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Registers the three gradients `(dx, dp, dq)` of an op with the parents `[x, p, q]` that
/// require them.
macro_rules! register {
    ($backend:ty, $parents:expr, $grads:expr, $out:expr) => {{
        let [x, p, q] = $parents;
        let (dx, dp, dq) = $out;
        for (parent, grad) in [(x, dx), (p, dp), (q, dq)] {
            if let Some(node) = parent {
                $grads.register::<$backend>(node.id, grad);
            }
        }
    }};
}

/// The three outputs of a backward op as autodiff tensors (of any checkpointing strategy):
/// gradients are not differentiated again (no second-order gradients through the fused ops).
#[allow(clippy::type_complexity)]
fn untracked<B: Backend>(
    (a, b, c): (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>),
) -> (
    FloatTensor<Autodiff<B>>,
    FloatTensor<Autodiff<B>>,
    FloatTensor<Autodiff<B>>,
) {
    let inner = <Autodiff<B> as AutodiffBackend>::from_inner;
    (inner(a), inner(b), inner(c))
}

impl<B: Backend + FusedNormOps, C: CheckpointStrategy> FusedNormOps for Autodiff<B, C> {
    fn fused_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        center: bool,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Debug)]
        struct GroupNormBackward;

        impl<B: Backend + FusedNormOps> Backward<B, 3> for GroupNormBackward {
            #[allow(clippy::type_complexity)]
            type State = (
                B::FloatTensorPrimitive,
                B::FloatTensorPrimitive,
                B::FloatTensorPrimitive,
                usize,
                bool,
                f64,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let dy = grads.consume::<B>(&ops.node);
                let (x, gamma, var, groups, center, epsilon) = ops.state;
                let out = B::fused_group_norm_backward(x, dy, gamma, var, groups, center, epsilon);
                register!(B, ops.parents, grads, out);
            }
        }

        let prepared = GroupNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let [x, gamma, beta] = [x, gamma, beta].map(|t| t.into_primitive());
        let (y, mean, var) =
            B::fused_group_norm(x.clone(), gamma.clone(), beta, groups, center, epsilon);
        let y = match prepared {
            OpsKind::Tracked(prep) => {
                let state = (x, gamma, var.clone(), groups, center, epsilon);
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Self::from_inner(mean), Self::from_inner(var))
    }

    fn fused_group_norm_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        var: FloatTensor<Self>,
        groups: usize,
        center: bool,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [x, dy, gamma, var] = [x, dy, gamma, var].map(|t| t.into_primitive());
        untracked(B::fused_group_norm_backward(
            x, dy, gamma, var, groups, center, epsilon,
        ))
    }

    fn fused_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        ghost: usize,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Debug)]
        struct BatchNormBackward;

        impl<B: Backend + FusedNormOps> Backward<B, 3> for BatchNormBackward {
            type State = (
                B::FloatTensorPrimitive,
                B::FloatTensorPrimitive,
                B::FloatTensorPrimitive,
                usize,
                f64,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let dy = grads.consume::<B>(&ops.node);
                let (x, gamma, var, ghost, epsilon) = ops.state;
                let out = B::fused_batch_norm_backward(x, dy, gamma, var, ghost, epsilon);
                register!(B, ops.parents, grads, out);
            }
        }

        let prepared = BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let [x, gamma, beta] = [x, gamma, beta].map(|t| t.into_primitive());
        let (y, mean, var) = B::fused_batch_norm(x.clone(), gamma.clone(), beta, ghost, epsilon);
        let y = match prepared {
            OpsKind::Tracked(prep) => prep.finish((x, gamma, var.clone(), ghost, epsilon), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Self::from_inner(mean), Self::from_inner(var))
    }

    fn fused_batch_norm_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        var: FloatTensor<Self>,
        ghost: usize,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [x, dy, gamma, var] = [x, dy, gamma, var].map(|t| t.into_primitive());
        untracked(B::fused_batch_norm_backward(
            x, dy, gamma, var, ghost, epsilon,
        ))
    }

    fn fused_channel_affine(
        x: FloatTensor<Self>,
        centre: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ChannelAffineBackward;

        impl<B: Backend + FusedNormOps> Backward<B, 3> for ChannelAffineBackward {
            type State = (
                B::FloatTensorPrimitive,
                B::FloatTensorPrimitive,
                B::FloatTensorPrimitive,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let dy = grads.consume::<B>(&ops.node);
                let (x, centre, scale) = ops.state;
                let out = B::fused_channel_affine_backward(x, dy, centre, scale);
                register!(B, ops.parents, grads, out);
            }
        }

        let prepared = ChannelAffineBackward
            .prepare::<C>([x.node(), scale.node(), shift.node()])
            .compute_bound()
            .stateful();
        let [x, centre, scale, shift] = [x, centre, scale, shift].map(|t| t.into_primitive());
        let y = B::fused_channel_affine(x.clone(), centre.clone(), scale.clone(), shift);
        match prepared {
            OpsKind::Tracked(prep) => prep.finish((x, centre, scale), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_channel_affine_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        centre: FloatTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [x, dy, centre, scale] = [x, dy, centre, scale].map(|t| t.into_primitive());
        untracked(B::fused_channel_affine_backward(x, dy, centre, scale))
    }
}

/// Group norm of `x: [N, C, S]` (every element real) -> `(y, mean, var)`, the statistics
/// shaped `[N, groups, 1]`.
pub(crate) fn group_norm(
    x: Tensor<3>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    groups: usize,
    center: bool,
    epsilon: f64,
) -> (Tensor<3>, Tensor<3>, Tensor<3>) {
    let [n, _, _] = x.dims();
    let (y, mean, var) = <Dispatch as FusedNormOps>::fused_group_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        groups,
        center,
        epsilon,
    );
    let stats = |t| Tensor::<1>::from_dispatch(t).reshape([n, groups, 1]);
    (Tensor::from_dispatch(y), stats(mean), stats(var))
}

/// Batch norm in training of `x: [N, C, S]` (every element real) over the virtual batches of
/// `ghost` (all `N` without) -> `(y, mean, var)`, each statistic `[C]` per virtual batch.
pub(crate) fn batch_norm(
    x: Tensor<3>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    ghost: Option<usize>,
    epsilon: f64,
) -> (Tensor<3>, Tensor<1>, Tensor<1>) {
    let [n, _, _] = x.dims();
    let (y, mean, var) = <Dispatch as FusedNormOps>::fused_batch_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        ghost.unwrap_or(n).max(1),
        epsilon,
    );
    (
        Tensor::from_dispatch(y),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
    )
}

/// `(x - centre[c]) * scale[c] + shift[c]` of `x: [N, C, S]`, the centre a constant.
pub(crate) fn channel_affine(
    x: Tensor<3>,
    centre: Tensor<1>,
    scale: Tensor<1>,
    shift: Tensor<1>,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as FusedNormOps>::fused_channel_affine(
        x.into_dispatch(),
        centre.detach().into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
    ))
}
