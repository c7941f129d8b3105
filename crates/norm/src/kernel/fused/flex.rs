//! The flex (CPU) implementation of the fused ops: contiguous copies of the inputs handed to the
//! kernels in `cpu`, in the inputs' float type.

use burn::backend::Flex;
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType};

use super::FusedNormOps;
use super::cpu::{self, Dims, Real};

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
fn tensor<T: Real>(values: Vec<T>, shape: &[usize], dtype: DType) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape.to_vec().into()),
        dtype,
    )
}

/// The gradients of a channels-first op with a per-channel pair of parameters: `dx` in the
/// input's shape `[N, C, S]`, the two parameter gradients `[C]`.
fn channel_grads<T: Real>(
    (dx, dp, dq): (Vec<T>, Vec<T>, Vec<T>),
    d: Dims,
    dtype: DType,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    (
        tensor(dx, &[d.n, d.c, d.s], dtype),
        tensor(dp, &[d.c], dtype),
        tensor(dq, &[d.c], dtype),
    )
}

impl FusedNormOps for Flex {
    fn fused_group_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        groups: usize,
        center: bool,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, gamma, beta) = (
            x.to_contiguous(),
            gamma.to_contiguous(),
            beta.to_contiguous(),
        );
        let (dtype, d) = (x.dtype(), dims(&x));
        crate::on_floats!(dtype, "fused norm kernels", |T| {
            let (y, mean, var) = cpu::group_norm::<T>(
                x.storage(),
                gamma.storage(),
                beta.storage(),
                d,
                groups,
                center,
                epsilon,
            );
            let stats = [d.n * groups];
            (
                tensor(y, &[d.n, d.c, d.s], dtype),
                tensor(mean, &stats, dtype),
                tensor(var, &stats, dtype),
            )
        })
    }

    fn fused_group_norm_backward(
        x: FlexTensor,
        dy: FlexTensor,
        gamma: FlexTensor,
        var: FlexTensor,
        groups: usize,
        center: bool,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, dy) = (x.to_contiguous(), dy.to_contiguous());
        let (gamma, var) = (gamma.to_contiguous(), var.to_contiguous());
        let (dtype, d) = (x.dtype(), dims(&x));
        crate::on_floats!(dtype, "fused norm kernels", |T| {
            let (dx, dgamma, dbeta) = cpu::group_norm_backward::<T>(
                x.storage(),
                dy.storage(),
                gamma.storage(),
                var.storage(),
                d,
                groups,
                center,
                epsilon,
            );
            channel_grads((dx, dgamma, dbeta), d, dtype)
        })
    }

    fn fused_batch_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, gamma, beta) = (
            x.to_contiguous(),
            gamma.to_contiguous(),
            beta.to_contiguous(),
        );
        let (dtype, d) = (x.dtype(), dims(&x));
        crate::on_floats!(dtype, "fused norm kernels", |T| {
            let (y, mean, var) =
                cpu::batch_norm::<T>(x.storage(), gamma.storage(), beta.storage(), d, epsilon);
            (
                tensor(y, &[d.n, d.c, d.s], dtype),
                tensor(mean, &[d.c], dtype),
                tensor(var, &[d.c], dtype),
            )
        })
    }

    fn fused_batch_norm_backward(
        x: FlexTensor,
        dy: FlexTensor,
        gamma: FlexTensor,
        var: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, dy) = (x.to_contiguous(), dy.to_contiguous());
        let (gamma, var) = (gamma.to_contiguous(), var.to_contiguous());
        let (dtype, d) = (x.dtype(), dims(&x));
        crate::on_floats!(dtype, "fused norm kernels", |T| {
            let (dx, dgamma, dbeta) = cpu::batch_norm_backward::<T>(
                x.storage(),
                dy.storage(),
                gamma.storage(),
                var.storage(),
                d,
                epsilon,
            );
            channel_grads((dx, dgamma, dbeta), d, dtype)
        })
    }

    fn fused_channel_affine(
        x: FlexTensor,
        centre: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
    ) -> FlexTensor {
        let (x, centre) = (x.to_contiguous(), centre.to_contiguous());
        let (scale, shift) = (scale.to_contiguous(), shift.to_contiguous());
        let (dtype, d) = (x.dtype(), dims(&x));
        crate::on_floats!(dtype, "fused norm kernels", |T| {
            let y = cpu::channel_affine::<T>(
                x.storage(),
                centre.storage(),
                scale.storage(),
                shift.storage(),
                d,
            );
            tensor(y, &[d.n, d.c, d.s], dtype)
        })
    }

    fn fused_channel_affine_backward(
        x: FlexTensor,
        dy: FlexTensor,
        centre: FlexTensor,
        scale: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, dy) = (x.to_contiguous(), dy.to_contiguous());
        let (centre, scale) = (centre.to_contiguous(), scale.to_contiguous());
        let (dtype, d) = (x.dtype(), dims(&x));
        crate::on_floats!(dtype, "fused norm kernels", |T| {
            let (dx, dscale, dshift) = cpu::channel_affine_backward::<T>(
                x.storage(),
                dy.storage(),
                centre.storage(),
                scale.storage(),
                d,
            );
            channel_grads((dx, dscale, dshift), d, dtype)
        })
    }
}
