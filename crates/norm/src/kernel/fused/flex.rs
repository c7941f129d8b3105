//! The flex (CPU) implementation of the fused ops: contiguous copies of the inputs handed to the
//! kernels in `cpu`, in the inputs' float type.

use burn::backend::Flex;
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType};

use super::cpu::{self, Dims, Real};
use super::evonorm::{EvoNorm, EvoNormGrad, EvoNormOps};
use super::frn::FrnOps;
use super::masked::{MaskedBatchNormOps, MaskedRows};
use super::renorm::{BatchRenormOps, Renorm};
use super::simd::Lanes;
use super::{FusedNorm, FusedNormGrads, FusedNormOps};
use crate::kernel::ghost_chunks;

/// The `[N, C, S]` of a rank-3 flex tensor.
fn dims(x: &FlexTensor) -> Dims {
    let shape = x.layout().shape();
    Dims {
        n: shape[0],
        c: shape[1],
        s: shape[2],
    }
}

/// A flex tensor of `shape` holding `values`.
pub(crate) fn tensor<T: Real>(values: Vec<T>, shape: &[usize], dtype: DType) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape.to_vec().into()),
        dtype,
    )
}

/// An output in the input's shape `[N, C, S]` and two of `sets` values each: a norm's output and
/// statistics (per group of each sample, or per channel), or the gradients of an op with a
/// per-channel pair of parameters.
fn outputs<T: Real>(
    (full, p, q): (Vec<T>, Vec<T>, Vec<T>),
    d: Dims,
    sets: usize,
    dtype: DType,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    (
        tensor(full, &[d.n, d.c, d.s], dtype),
        tensor(p, &[sets], dtype),
        tensor(q, &[sets], dtype),
    )
}

impl FusedNormOps for Flex {
    fn fused_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        norm: FusedNorm,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [x, gamma, beta] = [x, gamma, beta].map(|t| t.to_contiguous());
        let (dtype, d) = (x.dtype(), dims(&x));
        crate::on_floats!(dtype, "fused norm kernels", |T| {
            let (x, gamma, beta) = (x.storage(), gamma.storage(), beta.storage());
            match norm {
                FusedNorm::Group(spec) => {
                    let y_mean_var = cpu::group_norm::<T>(x, gamma, beta, d, spec);
                    outputs(y_mean_var, d, d.n * spec.groups, dtype)
                }
                FusedNorm::Batch(spec) => {
                    let chunks = ghost_chunks(d.n, d.s, Some(spec.ghost));
                    let y_mean_var = cpu::batch_norm::<T>(x, gamma, beta, d, &chunks, spec.epsilon);
                    outputs(y_mean_var, d, d.c * chunks.len(), dtype)
                }
            }
        })
    }

    fn fused_channel_affine(
        x: FlexTensor,
        centre: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
    ) -> FlexTensor {
        let [x, centre, scale, shift] = [x, centre, scale, shift].map(|t| t.to_contiguous());
        let (dtype, d) = (x.dtype(), dims(&x));
        crate::on_floats!(dtype, "fused norm kernels", |T| {
            let (x, centre) = (x.storage(), centre.storage());
            let y = cpu::channel_affine::<T>(x, centre, scale.storage(), shift.storage(), d);
            tensor(y, &[d.n, d.c, d.s], dtype)
        })
    }
}

impl FusedNormGrads for Flex {
    fn fused_norm_backward(
        x: FlexTensor,
        dy: FlexTensor,
        gamma: FlexTensor,
        var: FlexTensor,
        norm: FusedNorm,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [x, dy, gamma, var] = [x, dy, gamma, var].map(|t| t.to_contiguous());
        let (dtype, d) = (x.dtype(), dims(&x));
        crate::on_floats!(dtype, "fused norm kernels", |T| {
            let (x, dy, gamma, var) = (x.storage(), dy.storage(), gamma.storage(), var.storage());
            let grads = match norm {
                FusedNorm::Group(spec) => cpu::group_norm_backward::<T>(x, dy, gamma, var, d, spec),
                FusedNorm::Batch(spec) => {
                    let chunks = ghost_chunks(d.n, d.s, Some(spec.ghost));
                    cpu::batch_norm_backward::<T>(x, dy, gamma, var, d, &chunks, spec.epsilon)
                }
            };
            outputs(grads, d, d.c, dtype)
        })
    }

    fn fused_channel_affine_backward(
        x: FlexTensor,
        dy: FlexTensor,
        centre: FlexTensor,
        scale: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [x, dy, centre, scale] = [x, dy, centre, scale].map(|t| t.to_contiguous());
        let (dtype, d) = (x.dtype(), dims(&x));
        crate::on_floats!(dtype, "fused norm kernels", |T| {
            let (x, dy) = (x.storage(), dy.storage());
            let grads =
                cpu::channel_affine_backward::<T>(x, dy, centre.storage(), scale.storage(), d);
            outputs(grads, d, d.c, dtype)
        })
    }
}

impl EvoNormOps for Flex {
    fn fused_evonorm(
        x: FlexTensor,
        v: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        norm: EvoNorm,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [x, v, gamma, beta] = [x, v, gamma, beta].map(|t| t.to_contiguous());
        let (dtype, d) = (x.dtype(), dims(&x));
        crate::on_floats!(dtype, "fused norm kernels", |T| {
            let (x, per_channel) = (x.storage(), [v.storage(), gamma.storage(), beta.storage()]);
            let (y_mean_var, stats) = match norm {
                EvoNorm::S0(spec) => (
                    cpu::evonorm_s0::<T>(x, per_channel, d, spec),
                    d.n * spec.groups,
                ),
                EvoNorm::B0 { epsilon } => (cpu::evonorm_b0::<T>(x, per_channel, d, epsilon), d.c),
            };
            outputs(y_mean_var, d, stats, dtype)
        })
    }

    fn fused_evonorm_b0_inference(
        x: FlexTensor,
        v: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        var: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        let [x, v, gamma, beta, var] = [x, v, gamma, beta, var].map(|t| t.to_contiguous());
        let (dtype, d) = (x.dtype(), dims(&x));
        crate::on_floats!(dtype, "fused norm kernels", |T| {
            let per_channel = [v.storage(), gamma.storage(), beta.storage(), var.storage()];
            let y = cpu::evonorm_b0_inference::<T>(x.storage(), per_channel, d, epsilon);
            tensor(y, &[d.n, d.c, d.s], dtype)
        })
    }
}

/// `[dx, dv, dgamma, dbeta]` of an EvoNorm op, as `norm` says which, from the output gradient
/// `dy` and the kept `[x, v, gamma, var]`.
pub(super) fn evonorm_backward(
    [x, v, gamma, var]: [FlexTensor; 4],
    dy: FlexTensor,
    norm: EvoNormGrad,
) -> [FlexTensor; 4] {
    let [x, dy, v, gamma, var] = [x, dy, v, gamma, var].map(|t| t.to_contiguous());
    let (dtype, d) = (x.dtype(), dims(&x));
    crate::on_floats!(dtype, "fused norm kernels", |T| {
        let (x, dy) = (x.storage(), dy.storage());
        let per_channel = [v.storage(), gamma.storage(), var.storage()];
        let [dx, dv, dgamma, dbeta] = match norm {
            EvoNormGrad::S0(spec) => cpu::evonorm_s0_backward::<T>(x, dy, per_channel, d, spec),
            EvoNormGrad::B0 { epsilon, variance } => {
                cpu::evonorm_b0_backward::<T>(x, dy, per_channel, d, epsilon, variance)
            }
        };
        let channel = |values| tensor(values, &[d.c], dtype);
        [
            tensor(dx, &[d.n, d.c, d.s], dtype),
            channel(dv),
            channel(dgamma),
            channel(dbeta),
        ]
    })
}

/// The `[R, C]` of a rank-2 flex tensor as the dims of `R` rows of `C` channels.
fn row_dims(x: &FlexTensor) -> Dims {
    let shape = x.layout().shape();
    Dims {
        n: shape[0],
        c: shape[1],
        s: 1,
    }
}

impl MaskedBatchNormOps for Flex {
    fn fused_masked_batch_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        rows: MaskedRows,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [x, gamma, beta] = [x, gamma, beta].map(|t| t.to_contiguous());
        let (dtype, d) = (x.dtype(), row_dims(&x));
        crate::on_floats!(dtype, "fused norm kernels", |T| {
            let per_channel = [gamma.storage(), beta.storage()];
            let (y, mean, var) = cpu::masked_batch_norm::<T>(
                x.storage(),
                &rows.valid,
                per_channel,
                d.c,
                rows.epsilon,
            );
            let channel = |values| tensor(values, &[d.c], dtype);
            (tensor(y, &[d.n, d.c], dtype), channel(mean), channel(var))
        })
    }
}

/// `[dx, dgamma, dbeta]` of [`MaskedBatchNormOps::fused_masked_batch_norm`] from the output
/// gradient `dy` and the kept `[x, gamma, var]`.
pub(super) fn masked_batch_norm_backward(
    [x, gamma, var]: [FlexTensor; 3],
    dy: FlexTensor,
    rows: &MaskedRows,
) -> [FlexTensor; 3] {
    let [x, dy, gamma, var] = [x, dy, gamma, var].map(|t| t.to_contiguous());
    let (dtype, d) = (x.dtype(), row_dims(&x));
    crate::on_floats!(dtype, "fused norm kernels", |T| {
        let (x, dy, per_channel) = (x.storage(), dy.storage(), [gamma.storage(), var.storage()]);
        let (dx, dgamma, dbeta) = cpu::masked_batch_norm_backward::<T>(
            x,
            &rows.valid,
            dy,
            per_channel,
            d.c,
            rows.epsilon,
        );
        let channel = |values| tensor(values, &[d.c], dtype);
        [
            tensor(dx, &[d.n, d.c], dtype),
            channel(dgamma),
            channel(dbeta),
        ]
    })
}

impl BatchRenormOps for Flex {
    fn fused_batch_renorm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        moving: FlexTensor,
        renorm: Renorm,
    ) -> (FlexTensor, FlexTensor) {
        let [x, gamma, beta, moving] = [x, gamma, beta, moving].map(|t| t.to_contiguous());
        let (dtype, d) = (x.dtype(), dims(&x));
        crate::on_floats!(dtype, "fused norm kernels", |T| {
            let moving: &[T] = moving.storage();
            let (y, stats) = cpu::batch_renorm::<T>(
                x.storage(),
                [gamma.storage(), beta.storage()],
                [&moving[..d.c], &moving[d.c..]],
                d,
                [renorm.r_max, renorm.d_max],
                renorm.epsilon,
            );
            (
                tensor(y, &[d.n, d.c, d.s], dtype),
                tensor(stats, &[4 * d.c], dtype),
            )
        })
    }
}

/// `[dx, dgamma, dbeta]` of [`BatchRenormOps::fused_batch_renorm`] from the output gradient
/// `dy` and the kept `[x, gamma, stats]`.
pub(super) fn batch_renorm_backward(
    [x, gamma, stats]: [FlexTensor; 3],
    dy: FlexTensor,
    renorm: Renorm,
) -> [FlexTensor; 3] {
    let [x, dy, gamma, stats] = [x, dy, gamma, stats].map(|t| t.to_contiguous());
    let (dtype, d) = (x.dtype(), dims(&x));
    crate::on_floats!(dtype, "fused norm kernels", |T| {
        let (x, dy, gamma, stats) = (x.storage(), dy.storage(), gamma.storage(), stats.storage());
        let grads = cpu::batch_renorm_backward::<T>(x, dy, gamma, stats, d, renorm.epsilon);
        let (dx, dgamma, dbeta) = outputs(grads, d, d.c, dtype);
        [dx, dgamma, dbeta]
    })
}

/// `epsilon + |eps_l|` for FRN's learned epsilon `eps_l` (`[1]`).
fn total_epsilon<T: Real>(epsilon: f64, eps_l: &[T]) -> f64 {
    epsilon + eps_l[0].to_f64().abs()
}

impl FrnOps for Flex {
    fn fused_frn(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        tau: FlexTensor,
        eps_l: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor) {
        let [x, gamma, beta, tau, eps_l] = [x, gamma, beta, tau, eps_l].map(|t| t.to_contiguous());
        let (dtype, d) = (x.dtype(), dims(&x));
        crate::on_floats!(dtype, "fused norm kernels", |T| {
            let epsilon = total_epsilon::<T>(epsilon, eps_l.storage());
            let params = [gamma.storage(), beta.storage(), tau.storage()];
            let (y, nu2) = cpu::frn::<T>(x.storage(), params, d, epsilon);
            (
                tensor(y, &[d.n, d.c, d.s], dtype),
                tensor(nu2, &[d.n * d.c], dtype),
            )
        })
    }
}

/// `[dx, dgamma, dbeta, dtau, d eps_l]` of [`FrnOps::fused_frn`] from the output gradient `dy`
/// and the kept `[x, gamma, beta, tau, nu2, eps_l]`.
pub(super) fn frn_backward(kept: [FlexTensor; 6], dy: FlexTensor, epsilon: f64) -> [FlexTensor; 5] {
    let [x, gamma, beta, tau, nu2, eps_l] = kept.map(|t| t.to_contiguous());
    let dy = dy.to_contiguous();
    let (dtype, d) = (x.dtype(), dims(&x));
    crate::on_floats!(dtype, "fused norm kernels", |T| {
        let eps_l: &[T] = eps_l.storage();
        let epsilon = total_epsilon(epsilon, eps_l);
        let params = [
            gamma.storage(),
            beta.storage(),
            tau.storage(),
            nu2.storage(),
        ];
        let (dx, [dgamma, dbeta, dtau], d_epsilon) =
            cpu::frn_backward::<T>(x.storage(), dy.storage(), params, d, epsilon);
        // d |e| / d e = sign(e), 0 at 0 (as burn's `abs`).
        let sign = match eps_l[0].to_f64() {
            e if e > 0.0 => 1.0,
            e if e < 0.0 => -1.0,
            _ => 0.0,
        };
        let channel = |values| tensor(values, &[d.c], dtype);
        [
            tensor(dx, &[d.n, d.c, d.s], dtype),
            channel(dgamma),
            channel(dbeta),
            channel(dtau),
            tensor(vec![T::from_f64(sign * d_epsilon)], &[1], dtype),
        ]
    })
}
