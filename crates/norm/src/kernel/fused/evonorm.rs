//! EvoNorm-S0 and -B0 as fused ops with hand-written backwards, on the flex (CPU) backend: two
//! passes over the activation forward and two backward, where a composed layer runs a dozen
//! ops or more (S0's sigmoid among them, one scalar `exp` per value and op); and B0 in
//! inference, one pass.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;

use super::cpu::B0Variance;
use super::{FusedNode, NodeGradients, flex};

use crate::kernel::GroupSpec;

/// Which EvoNorm a fused op computes: S0 over the groups of `spec` (`spec.center` is ignored:
/// its variance is always centred), or B0 in training with its `epsilon`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum EvoNorm {
    S0(GroupSpec),
    B0 { epsilon: f64 },
}

/// What the backward of an EvoNorm op differentiates: the op of
/// [`EvoNormOps::fused_evonorm`], or EvoNorm-B0 in inference, dividing by a running variance
/// ([`EvoNormOps::fused_evonorm_b0_inference`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum EvoNormGrad {
    S0(GroupSpec),
    B0 { epsilon: f64, variance: B0Variance },
}

impl From<EvoNorm> for EvoNormGrad {
    fn from(norm: EvoNorm) -> Self {
        match norm {
            EvoNorm::S0(spec) => Self::S0(spec),
            EvoNorm::B0 { epsilon } => Self::B0 {
                epsilon,
                variance: B0Variance::Batch,
            },
        }
    }
}

/// The EvoNorm ops, on flex alone. Their backward runs on flex from the autodiff node, so it is
/// no dispatched op.
#[backend_extension(Flex, Autodiff)]
pub(crate) trait EvoNormOps: Backend {
    /// `x: [N, C, S]`, and `v`, `gamma`, `beta`, each `[C]` -> `(y, mean, var)`: for S0 the
    /// statistics of each (sample, group), `[N * groups]`; for B0 each channel's over the
    /// batch, `[C]`.
    #[allow(clippy::type_complexity)]
    fn fused_evonorm(
        x: FloatTensor<Self>,
        v: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        norm: EvoNorm,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// EvoNorm-B0 in inference: `x: [N, C, S]`, and `v`, `gamma`, `beta` and the running
    /// variance `var`, each `[C]` -> `y`. No gradient reaches `var`.
    fn fused_evonorm_b0_inference(
        x: FloatTensor<Self>,
        v: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;
}

/// `(x, v, gamma, var)` -> `(dx, dv, dgamma, dbeta)`.
impl NodeGradients<Flex, 4> for EvoNormGrad {
    fn gradients(
        self,
        saved: [FloatTensor<Flex>; 4],
        dy: FloatTensor<Flex>,
    ) -> [FloatTensor<Flex>; 4] {
        flex::evonorm_backward(saved, dy, self)
    }
}

impl<C: CheckpointStrategy> EvoNormOps for Autodiff<Flex, C> {
    fn fused_evonorm(
        x: FloatTensor<Self>,
        v: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        norm: EvoNorm,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let inputs = [x, v, gamma, beta];
        let (y, (mean, var)) = with_node::<C, _>(norm.into(), inputs, |[x, v, gamma, beta]| {
            let (y, mean, var) = Flex::fused_evonorm(x, v, gamma, beta, norm);
            (y, var.clone(), (mean, var))
        });
        (y, Self::from_inner(mean), Self::from_inner(var))
    }

    fn fused_evonorm_b0_inference(
        x: FloatTensor<Self>,
        v: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let node = EvoNormGrad::B0 {
            epsilon,
            variance: B0Variance::Running,
        };
        let var = var.into_primitive();
        let (y, ()) = with_node::<C, _>(node, [x, v, gamma, beta], |[x, v, gamma, beta]| {
            let y = Flex::fused_evonorm_b0_inference(x, v, gamma, beta, var.clone(), epsilon);
            (y, var, ())
        });
        y
    }
}

/// Runs `forward` on flex with `[x, v, gamma, beta]`, and where a gradient is wanted records
/// `node` keeping `[x, v, gamma, var]`: `forward` gives `y`, the variance `var` it divided by
/// and whatever else its op returns.
fn with_node<C: CheckpointStrategy, Rest>(
    node: EvoNormGrad,
    inputs: [FloatTensor<Autodiff<Flex, C>>; 4],
    forward: impl FnOnce([FloatTensor<Flex>; 4]) -> (FloatTensor<Flex>, FloatTensor<Flex>, Rest),
) -> (FloatTensor<Autodiff<Flex, C>>, Rest) {
    let prepared = FusedNode(node)
        .prepare::<C>(inputs.each_ref().map(|t| t.node()))
        .compute_bound()
        .stateful();
    let [x, v, gamma, beta] = inputs.map(|t| t.into_primitive());
    let (y, var, rest) = forward([x.clone(), v.clone(), gamma.clone(), beta]);
    let y = match prepared {
        OpsKind::Tracked(prep) => prep.finish([x, v, gamma, var], y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    (y, rest)
}

/// EvoNorm of `x: [N, C, S]` (every element real) with the per-channel `v`, `gamma` and `beta`
/// -> `(y, mean, var)` as [`EvoNormOps::fused_evonorm`] gives them. Call only where
/// [`available_on_flex`](super::available_on_flex).
pub(crate) fn evonorm(
    x: Tensor<3>,
    [v, gamma, beta]: [Tensor<1>; 3],
    norm: EvoNorm,
) -> (Tensor<3>, Tensor<1>, Tensor<1>) {
    let (y, mean, var) = <Dispatch as EvoNormOps>::fused_evonorm(
        x.into_dispatch(),
        v.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        norm,
    );
    (
        Tensor::from_dispatch(y),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
    )
}

/// EvoNorm-B0 in inference of `x: [N, C, S]` (every element real) with the per-channel `v`,
/// `gamma`, `beta` and running variance `var`, as
/// [`EvoNormOps::fused_evonorm_b0_inference`] gives it. Call only where
/// [`available_on_flex`](super::available_on_flex).
pub(crate) fn evonorm_b0_inference(
    x: Tensor<3>,
    [v, gamma, beta, var]: [Tensor<1>; 4],
    epsilon: f64,
) -> Tensor<3> {
    let y = <Dispatch as EvoNormOps>::fused_evonorm_b0_inference(
        x.into_dispatch(),
        v.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        var.into_dispatch(),
        epsilon,
    );
    Tensor::from_dispatch(y)
}
