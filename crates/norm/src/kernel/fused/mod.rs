//! Fused norm kernels as burn custom ops: one op per computation (group norm and its special
//! cases, batch norm in training, a per-channel affine map) with a hand-written backward, so
//! that a norm layer costs two passes over its activation forward and two backward instead of a
//! dozen composed ops. The kernels run on the flex (CPU) backend (`flex`, `cpu`) and, with the
//! `wgpu` feature, on burn's CubeCL backends (`cube`); [`available`] says when the seam may use
//! them. EvoNorm (`evonorm`), FRN's learned epsilon (`frn`), batch norm over padded rows
//! (`masked`) and batch renormalization (`renorm`) have CPU kernels alone
//! ([`available_on_flex`]). Every op's autodiff node is one [`FusedNode`].

mod cpu;
#[cfg(feature = "wgpu")]
mod cube;
pub(crate) mod evonorm;
mod flex;
pub(crate) mod frn;
pub(crate) mod masked;
pub(crate) mod renorm;
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
use crate::kernel::GroupSpec;
pub(crate) use cpu::Real;
pub(crate) use flex::tensor as flex_tensor;

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

/// True when `kernels` asks for the fused kernels and `x` lives on flex (with or without
/// autodiff) in `f32` or `f64`: where the ops with a CPU kernel alone run (EvoNorm, FRN's
/// learned epsilon).
pub(crate) fn available_on_flex(x: &Tensor<3>, kernels: Kernels) -> bool {
    let on_flex = matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_));
    kernels == Kernels::Fastest && on_flex && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// The fused ops. Each has a twin in [`FusedNormGrads`], which the autodiff implementation's
/// node calls on the inner backend. On the CubeCL backends they run lazily through burn's
/// fusion backend, which needs each output's shape up front (`cube::shapes`).
#[backend_extension(Flex, Cube: cfg(feature = "wgpu"), Fusion: cfg(feature = "wgpu"), Autodiff)]
pub(crate) trait FusedNormOps: Backend {
    /// `x: [N, C, S]` normalized as `norm` says -> `(y, mean, var)`: for group norm the
    /// statistics `[N * groups]`, for batch norm `[C]` per virtual batch, one after another.
    #[fusion(meta = |x, gamma, _beta, norm| cube::shapes::norm(x, gamma, norm))]
    fn fused_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        norm: FusedNorm,
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
}

/// The backward of each [`FusedNormOps`] op, on the backends that compute it. Only an autodiff
/// node calls them, on its inner backend: autodiff backends have none.
#[backend_extension(Flex, Cube: cfg(feature = "wgpu"), Fusion: cfg(feature = "wgpu"))]
pub(crate) trait FusedNormGrads: Backend {
    /// `(dx, dgamma, dbeta)` of [`fused_norm`](FusedNormOps::fused_norm), batch norm's
    /// parameter gradients added up over the virtual batches.
    #[fusion(meta = |x, _dy, gamma, _var, _norm| cube::shapes::channel_pair(x, gamma))]
    fn fused_norm_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        var: FloatTensor<Self>,
        norm: FusedNorm,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `(dx, dscale, dshift)` of [`fused_channel_affine`](FusedNormOps::fused_channel_affine).
    #[fusion(meta = |x, _dy, _centre, scale| cube::shapes::channel_pair(x, scale))]
    fn fused_channel_affine_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        centre: FloatTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Batch norm in training over virtual batches of `ghost` samples (at least 1; `N` or more: the
/// whole batch), cut as [`ghost_chunks`](crate::kernel::ghost_chunks) cuts them, with `epsilon`
/// added to the variance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BatchSpec {
    pub ghost: usize,
    pub epsilon: f64,
}

/// The norms the fused ops compute: statistics per group of each sample, or per channel over
/// the (virtual) batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FusedNorm {
    Group(GroupSpec),
    Batch(BatchSpec),
}

/// What a fused op's backward needs: from the output gradient and the `N` tensors its node
/// saved, the gradients of its `N` parents, in order.
pub(super) trait NodeGradients<B: Backend, const N: usize>:
    std::fmt::Debug + Send + 'static
{
    fn gradients(self, saved: [FloatTensor<B>; N], dy: FloatTensor<B>) -> [FloatTensor<B>; N];
}

/// The autodiff node of every fused op: it keeps the op's settings and `N` tensors, and hands
/// the gradients of its `N` parents to those that require them.
#[derive(Debug)]
pub(super) struct FusedNode<Op>(pub Op);

impl<B: Backend, Op: NodeGradients<B, N>, const N: usize> Backward<B, N> for FusedNode<Op> {
    type State = [B::FloatTensorPrimitive; N];

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<B>(&ops.node);
        let out = self.0.gradients(ops.state, dy);
        for (parent, grad) in ops.parents.into_iter().zip(out) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// `(x, gamma, var)` -> `(dx, dgamma, dbeta)`.
impl<B: FusedNormGrads> NodeGradients<B, 3> for FusedNorm {
    fn gradients(
        self,
        [x, gamma, var]: [FloatTensor<B>; 3],
        dy: FloatTensor<B>,
    ) -> [FloatTensor<B>; 3] {
        let (dx, dgamma, dbeta) = B::fused_norm_backward(x, dy, gamma, var, self);
        [dx, dgamma, dbeta]
    }
}

/// The channel affine map, which has no settings: `(x, centre, scale)` -> `(dx, dscale,
/// dshift)`.
#[derive(Debug, Clone, Copy)]
struct ChannelAffine;

impl<B: FusedNormGrads> NodeGradients<B, 3> for ChannelAffine {
    fn gradients(
        self,
        [x, centre, scale]: [FloatTensor<B>; 3],
        dy: FloatTensor<B>,
    ) -> [FloatTensor<B>; 3] {
        let (dx, dscale, dshift) = B::fused_channel_affine_backward(x, dy, centre, scale);
        [dx, dscale, dshift]
    }
}

impl<B: FusedNormOps + FusedNormGrads, C: CheckpointStrategy> FusedNormOps for Autodiff<B, C> {
    /// The inner backend's forward, and a [`FusedNode`] that keeps `(x, gamma, var)` when a
    /// gradient is wanted. The statistics are not differentiated.
    fn fused_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        norm: FusedNorm,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prepared = FusedNode(norm)
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let [x, gamma, beta] = [x, gamma, beta].map(|t| t.into_primitive());
        let (y, mean, var) = B::fused_norm(x.clone(), gamma.clone(), beta, norm);
        let y = match prepared {
            OpsKind::Tracked(prep) => prep.finish([x, gamma, var.clone()], y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Self::from_inner(mean), Self::from_inner(var))
    }

    fn fused_channel_affine(
        x: FloatTensor<Self>,
        centre: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let prepared = FusedNode(ChannelAffine)
            .prepare::<C>([x.node(), scale.node(), shift.node()])
            .compute_bound()
            .stateful();
        let [x, centre, scale, shift] = [x, centre, scale, shift].map(|t| t.into_primitive());
        let y = B::fused_channel_affine(x.clone(), centre.clone(), scale.clone(), shift);
        match prepared {
            OpsKind::Tracked(prep) => prep.finish([x, centre, scale], y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

/// Group norm of `x: [N, C, S]` (every element real) -> `(y, mean, var)`, the statistics
/// shaped `[N, groups, 1]`.
pub(crate) fn group_norm(
    x: Tensor<3>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    spec: GroupSpec,
) -> (Tensor<3>, Tensor<3>, Tensor<3>) {
    let [n, _, _] = x.dims();
    let (y, mean, var) = <Dispatch as FusedNormOps>::fused_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        FusedNorm::Group(spec),
    );
    let stats = |t| Tensor::<1>::from_dispatch(t).reshape([n, spec.groups, 1]);
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
    let batches = BatchSpec {
        ghost: ghost.unwrap_or(n).max(1),
        epsilon,
    };
    let (y, mean, var) = <Dispatch as FusedNormOps>::fused_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        FusedNorm::Batch(batches),
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
