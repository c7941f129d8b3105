//! The CubeCL implementation of the fused ops: contiguous inputs, outputs allocated on the
//! device, and one launch of the kernels in `kernels` per reduction pattern. burn's fusion
//! backend calls these lazily, with the shapes from [`shapes`] promised in advance.

mod kernels;

use burn::backend::cubecl::dtype_to_storage_type;
use burn::tensor::Shape;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::*;
use cubecl::server::CubeCountSelection;

use super::{BatchSpec, FusedNorm, FusedNormGrads, FusedNormOps};
use crate::kernel::{GroupSpec, ghost_chunks};

/// Units per cube of the reduction kernels: every GPU runs 256, and a cube of one group or
/// channel rarely has fewer elements.
const BLOCK: usize = 256;

/// The output shapes of the ops, for burn's fusion backend.
pub(super) mod shapes {
    use burn::backend::fusion::custom::TensorSpec;
    use burn::tensor::Shape;

    use super::FusedNorm;
    use crate::kernel::ghost_chunks;

    /// `y` like `x: [N, C, S]`, and the statistics: `[N * groups]` for group norm, `[C]` per
    /// virtual batch for batch norm.
    pub fn norm(
        x: &TensorSpec,
        gamma: &TensorSpec,
        norm: &FusedNorm,
    ) -> (TensorSpec, TensorSpec, TensorSpec) {
        let sets = match norm {
            FusedNorm::Group(spec) => x.shape[0] * spec.groups,
            FusedNorm::Batch(spec) => {
                let chunks = ghost_chunks(x.shape[0], x.shape[2], Some(spec.ghost));
                gamma.shape[0] * chunks.len()
            }
        };
        let stats = TensorSpec::new(Shape::new([sets]), x.dtype);
        (x.clone(), stats.clone(), stats)
    }

    /// An output like `x` and two like the per-channel `channel`: every op's gradients.
    pub fn channel_pair(
        x: &TensorSpec,
        channel: &TensorSpec,
    ) -> (TensorSpec, TensorSpec, TensorSpec) {
        (x.clone(), channel.clone(), channel.clone())
    }
}

/// `[N, C, S]` of `x`, each as the `u32` the kernels take.
fn dims(x: &CubeTensor) -> [u32; 3] {
    let shape = x.meta.shape();
    [shape[0], shape[1], shape[2]].map(|d| u32::try_from(d).expect("norm dimension over u32"))
}

/// A new contiguous tensor of `shape` on `like`'s device, in its float type.
fn empty(like: &CubeTensor, shape: impl Into<Shape>) -> CubeTensor {
    empty_device_contiguous_dtype(
        like.client.clone(),
        like.device.clone(),
        shape.into(),
        like.dtype,
    )
}

/// New tensors for an output like `x` and two of `sets` values each: a norm's output and
/// statistics (per group of each sample, or per channel), or the gradients of an op with a
/// per-channel pair of parameters.
fn outputs(x: &CubeTensor, sets: u32) -> (CubeTensor, CubeTensor, CubeTensor) {
    let sets = sets as usize;
    (
        empty(x, x.meta.shape().clone()),
        empty(x, [sets]),
        empty(x, [sets]),
    )
}

/// One cube of [`BLOCK`] units for each of `sets` reductions.
fn per_set(x: &CubeTensor, sets: u32) -> (CubeCount, CubeDim) {
    let count = CubeCountSelection::new(&x.client, sets).cube_count();
    (count, CubeDim::new_1d(BLOCK as u32))
}

/// [`kernels::Groups`] of `x: [N, C, S]` for `spec`.
fn groups(x: &CubeTensor, spec: GroupSpec) -> kernels::GroupsLaunch {
    let [_, c, s] = dims(x);
    let groups = spec.groups as u32;
    kernels::GroupsLaunch::new(groups, c / groups, s, spec.epsilon as f32)
}

/// [`kernels::VirtualBatches`] of `x: [N, C, S]` for `spec`, cut as [`ghost_chunks`] cuts them.
fn virtual_batches(x: &CubeTensor, spec: BatchSpec) -> kernels::VirtualBatchesLaunch {
    let [n, _, s] = dims(x).map(|d| d as usize);
    let chunks = ghost_chunks(n, s, Some(spec.ghost)).len();
    let [spatial, ghost, chunks] =
        [s, spec.ghost.min(n), chunks].map(|v| u32::try_from(v).expect("norm dimension over u32"));
    kernels::VirtualBatchesLaunch::new(spatial, ghost, chunks, spec.epsilon as f32)
}

/// [`FusedNormOps::fused_norm`] for group norm, `x` contiguous.
fn group_norm(
    x: CubeTensor,
    gamma: CubeTensor,
    beta: CubeTensor,
    spec: GroupSpec,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let sets = dims(&x)[0] * spec.groups as u32;
    let (y, mean, var) = outputs(&x, sets);
    let (count, dim) = per_set(&x, sets);
    kernels::group_norm::launch(
        &x.client.clone(),
        count,
        dim,
        x.clone().into_tensor_arg(),
        gamma.into_tensor_arg(),
        beta.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        mean.clone().into_tensor_arg(),
        var.clone().into_tensor_arg(),
        groups(&x, spec),
        spec.center,
        BLOCK,
        dtype_to_storage_type(x.dtype),
    );
    (y, mean, var)
}

/// [`FusedNormOps::fused_norm_backward`] for group norm, the tensors contiguous.
fn group_norm_backward(
    x: CubeTensor,
    dy: CubeTensor,
    gamma: CubeTensor,
    var: CubeTensor,
    spec: GroupSpec,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let [n, c, _] = dims(&x);
    let sets = n * spec.groups as u32;
    let client = x.client.clone();
    let dtype = dtype_to_storage_type(x.dtype);

    let (dx, shift, offset) = outputs(&x, sets);
    let (count, dim) = per_set(&x, sets);
    kernels::group_norm_input_grad::launch(
        &client,
        count,
        dim,
        x.clone().into_tensor_arg(),
        dy.clone().into_tensor_arg(),
        gamma.into_tensor_arg(),
        var.clone().into_tensor_arg(),
        dx.clone().into_tensor_arg(),
        shift.clone().into_tensor_arg(),
        offset.clone().into_tensor_arg(),
        groups(&x, spec),
        spec.center,
        BLOCK,
        dtype,
    );

    let (dgamma, dbeta) = (empty(&x, [c as usize]), empty(&x, [c as usize]));
    let (count, dim) = per_set(&x, c);
    kernels::group_norm_params::launch(
        &client,
        count,
        dim,
        x.clone().into_tensor_arg(),
        dy.into_tensor_arg(),
        shift.into_tensor_arg(),
        offset.into_tensor_arg(),
        var.into_tensor_arg(),
        dgamma.clone().into_tensor_arg(),
        dbeta.clone().into_tensor_arg(),
        groups(&x, spec),
        BLOCK,
        dtype,
    );
    (dx, dgamma, dbeta)
}

/// [`FusedNormOps::fused_norm`] for batch norm, `x` contiguous.
fn batch_norm(
    x: CubeTensor,
    gamma: CubeTensor,
    beta: CubeTensor,
    spec: BatchSpec,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let c = dims(&x)[1];
    let batches = virtual_batches(&x, spec);
    let (y, mean, var) = outputs(&x, c * batches.chunks);
    let (count, dim) = per_set(&x, c);
    kernels::batch_norm::launch(
        &x.client.clone(),
        count,
        dim,
        x.clone().into_tensor_arg(),
        gamma.into_tensor_arg(),
        beta.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        mean.clone().into_tensor_arg(),
        var.clone().into_tensor_arg(),
        batches,
        BLOCK,
        dtype_to_storage_type(x.dtype),
    );
    (y, mean, var)
}

/// [`FusedNormOps::fused_norm_backward`] for batch norm, the tensors contiguous.
fn batch_norm_backward(
    x: CubeTensor,
    dy: CubeTensor,
    gamma: CubeTensor,
    var: CubeTensor,
    spec: BatchSpec,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let c = dims(&x)[1];
    let (dx, dgamma, dbeta) = outputs(&x, c);
    let (count, dim) = per_set(&x, c);
    kernels::batch_norm_grads::launch(
        &x.client.clone(),
        count,
        dim,
        x.clone().into_tensor_arg(),
        dy.into_tensor_arg(),
        gamma.into_tensor_arg(),
        var.into_tensor_arg(),
        dx.clone().into_tensor_arg(),
        dgamma.clone().into_tensor_arg(),
        dbeta.clone().into_tensor_arg(),
        virtual_batches(&x, spec),
        BLOCK,
        dtype_to_storage_type(x.dtype),
    );
    (dx, dgamma, dbeta)
}

impl FusedNormOps for CubeBackend {
    fn fused_norm(
        x: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        norm: FusedNorm,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let [x, gamma, beta] = [x, gamma, beta].map(into_contiguous);
        match norm {
            FusedNorm::Group(spec) => group_norm(x, gamma, beta, spec),
            FusedNorm::Batch(spec) => batch_norm(x, gamma, beta, spec),
        }
    }

    fn fused_channel_affine(
        x: CubeTensor,
        centre: CubeTensor,
        scale: CubeTensor,
        shift: CubeTensor,
    ) -> CubeTensor {
        let [x, centre, scale, shift] = [x, centre, scale, shift].map(into_contiguous);
        let [_, _, s] = dims(&x);
        let y = empty(&x, x.meta.shape().clone());
        let elements = x.meta.num_elements();
        let dim = CubeDim::new(&x.client, elements);
        let count = calculate_cube_count_elemwise(&x.client, elements, dim);
        let dtype = dtype_to_storage_type(x.dtype);
        kernels::channel_affine::launch(
            &x.client.clone(),
            count,
            dim,
            x.into_tensor_arg(),
            centre.into_tensor_arg(),
            scale.into_tensor_arg(),
            shift.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            s,
            dtype,
        );
        y
    }
}

impl FusedNormGrads for CubeBackend {
    fn fused_norm_backward(
        x: CubeTensor,
        dy: CubeTensor,
        gamma: CubeTensor,
        var: CubeTensor,
        norm: FusedNorm,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let [x, dy, gamma, var] = [x, dy, gamma, var].map(into_contiguous);
        match norm {
            FusedNorm::Group(spec) => group_norm_backward(x, dy, gamma, var, spec),
            FusedNorm::Batch(spec) => batch_norm_backward(x, dy, gamma, var, spec),
        }
    }

    fn fused_channel_affine_backward(
        x: CubeTensor,
        dy: CubeTensor,
        centre: CubeTensor,
        scale: CubeTensor,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let [x, dy, centre, scale] = [x, dy, centre, scale].map(into_contiguous);
        let [_, c, s] = dims(&x);
        let (dx, dscale, dshift) = outputs(&x, c);
        let (count, dim) = per_set(&x, c);
        let dtype = dtype_to_storage_type(x.dtype);
        kernels::channel_affine_grads::launch(
            &x.client.clone(),
            count,
            dim,
            x.into_tensor_arg(),
            dy.into_tensor_arg(),
            centre.into_tensor_arg(),
            scale.into_tensor_arg(),
            dx.clone().into_tensor_arg(),
            dscale.clone().into_tensor_arg(),
            dshift.clone().into_tensor_arg(),
            s,
            BLOCK,
            dtype,
        );
        (dx, dscale, dshift)
    }
}
