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

use super::FusedNormOps;
use crate::kernel::ghost_chunks;

/// Units per cube of the reduction kernels: every GPU runs 256, and a cube of one group or
/// channel rarely has fewer elements.
const BLOCK: usize = 256;

/// The output shapes of the ops, for burn's fusion backend.
pub(super) mod shapes {
    use burn::backend::fusion::custom::TensorSpec;
    use burn::tensor::Shape;

    /// Group norm: `y` like `x: [N, C, S]`, the statistics `[N * groups]`.
    pub fn group_norm(x: &TensorSpec, groups: usize) -> (TensorSpec, TensorSpec, TensorSpec) {
        let stats = TensorSpec::new(Shape::new([x.shape[0] * groups]), x.dtype);
        (x.clone(), stats.clone(), stats)
    }

    /// Batch norm over virtual batches of `ghost`: `y` like `x: [N, C, S]`, the statistics
    /// `[C]` per virtual batch.
    pub fn batch_norm(
        x: &TensorSpec,
        gamma: &TensorSpec,
        ghost: usize,
    ) -> (TensorSpec, TensorSpec, TensorSpec) {
        let chunks = crate::kernel::ghost_chunks(x.shape[0], x.shape[2], Some(ghost)).len();
        let stats = TensorSpec::new(Shape::new([gamma.shape[0] * chunks]), x.dtype);
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

/// The samples per virtual batch and the number of virtual batches that batch norm with
/// `ghost` cuts `x` into (see [`ghost_chunks`]).
fn virtual_batches(x: &CubeTensor, ghost: usize) -> (u32, u32) {
    let [n, _, s] = dims(x).map(|d| d as usize);
    let chunks = ghost_chunks(n, s, Some(ghost)).len();
    let ghost = ghost.min(n);
    [ghost, chunks]
        .map(|v| u32::try_from(v).expect("norm dimension over u32"))
        .into()
}

/// One cube of [`BLOCK`] units for each of `sets` reductions.
fn per_set(x: &CubeTensor, sets: u32) -> (CubeCount, CubeDim) {
    let count = CubeCountSelection::new(&x.client, sets).cube_count();
    (count, CubeDim::new_1d(BLOCK as u32))
}

impl FusedNormOps for CubeBackend {
    fn fused_group_norm(
        x: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        groups: usize,
        center: bool,
        epsilon: f64,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let [x, gamma, beta] = [x, gamma, beta].map(into_contiguous);
        let [n, c, s] = dims(&x);
        let groups = groups as u32;
        let (y, mean, var) = outputs(&x, n * groups);
        let (count, dim) = per_set(&x, n * groups);
        let dtype = dtype_to_storage_type(x.dtype);
        kernels::group_norm::launch(
            &x.client.clone(),
            count,
            dim,
            x.into_tensor_arg(),
            gamma.into_tensor_arg(),
            beta.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            mean.clone().into_tensor_arg(),
            var.clone().into_tensor_arg(),
            groups,
            c / groups,
            s,
            epsilon as f32,
            center,
            BLOCK,
            dtype,
        );
        (y, mean, var)
    }

    fn fused_group_norm_backward(
        x: CubeTensor,
        dy: CubeTensor,
        gamma: CubeTensor,
        var: CubeTensor,
        groups: usize,
        center: bool,
        epsilon: f64,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let [x, dy, gamma, var] = [x, dy, gamma, var].map(into_contiguous);
        let [n, c, s] = dims(&x);
        let groups = groups as u32;
        let client = x.client.clone();
        let dtype = dtype_to_storage_type(x.dtype);

        let (dx, shift, offset) = outputs(&x, n * groups);
        let (count, dim) = per_set(&x, n * groups);
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
            groups,
            c / groups,
            s,
            epsilon as f32,
            center,
            BLOCK,
            dtype,
        );

        let (dgamma, dbeta) = (empty(&x, [c as usize]), empty(&x, [c as usize]));
        let (count, dim) = per_set(&x, c);
        kernels::group_norm_params::launch(
            &client,
            count,
            dim,
            x.into_tensor_arg(),
            dy.into_tensor_arg(),
            shift.into_tensor_arg(),
            offset.into_tensor_arg(),
            var.into_tensor_arg(),
            dgamma.clone().into_tensor_arg(),
            dbeta.clone().into_tensor_arg(),
            groups,
            c / groups,
            s,
            epsilon as f32,
            BLOCK,
            dtype,
        );
        (dx, dgamma, dbeta)
    }

    fn fused_batch_norm(
        x: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        ghost: usize,
        epsilon: f64,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let [x, gamma, beta] = [x, gamma, beta].map(into_contiguous);
        let [_, c, s] = dims(&x);
        let (ghost, chunks) = virtual_batches(&x, ghost);
        let (y, mean, var) = outputs(&x, c * chunks);
        let (count, dim) = per_set(&x, c);
        let dtype = dtype_to_storage_type(x.dtype);
        kernels::batch_norm::launch(
            &x.client.clone(),
            count,
            dim,
            x.into_tensor_arg(),
            gamma.into_tensor_arg(),
            beta.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            mean.clone().into_tensor_arg(),
            var.clone().into_tensor_arg(),
            s,
            ghost,
            chunks,
            epsilon as f32,
            BLOCK,
            dtype,
        );
        (y, mean, var)
    }

    fn fused_batch_norm_backward(
        x: CubeTensor,
        dy: CubeTensor,
        gamma: CubeTensor,
        var: CubeTensor,
        ghost: usize,
        epsilon: f64,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let [x, dy, gamma, var] = [x, dy, gamma, var].map(into_contiguous);
        let [_, c, s] = dims(&x);
        let (ghost, chunks) = virtual_batches(&x, ghost);
        let (dx, dgamma, dbeta) = outputs(&x, c);
        let (count, dim) = per_set(&x, c);
        let dtype = dtype_to_storage_type(x.dtype);
        kernels::batch_norm_grads::launch(
            &x.client.clone(),
            count,
            dim,
            x.into_tensor_arg(),
            dy.into_tensor_arg(),
            gamma.into_tensor_arg(),
            var.into_tensor_arg(),
            dx.clone().into_tensor_arg(),
            dgamma.clone().into_tensor_arg(),
            dbeta.clone().into_tensor_arg(),
            s,
            ghost,
            chunks,
            epsilon as f32,
            BLOCK,
            dtype,
        );
        (dx, dgamma, dbeta)
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
