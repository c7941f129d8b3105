//! The fused ops as CubeCL kernels, for every CubeCL runtime (wgpu, CUDA, ...). A norm's
//! statistics are reductions over a group of one sample (group norm) or over a channel of the
//! whole batch (batch norm, the parameter gradients): each such set is one cube, whose units
//! stride over its elements, keep partial sums in registers and add them up in shared memory.
//! Every value is centred as `(x - shift) - offset`, `shift` one of the set's own values and
//! `offset` the mean of `x - shift`: the subtraction of two close values is exact, so the
//! centred values keep their digits when the mean dwarfs the spread (two values 4.254 and 4.243
//! centred around a rounded mean lose 4 of f32's 7 digits, and the gradient, a difference of
//! nearly equal terms, loses them all). The variance is the mean square of the centred values
//! (a second pass).
//!
//! `x` is `[N, C, S]`, contiguous: element `(n, c, s)` at `(n * C + c) * S + s`.

use cubecl::prelude::*;

/// The sum of every unit's `value`, returned to every unit of the cube; `shared` holds one
/// value per unit.
#[cube]
fn cube_sum<F: Float>(value: F, shared: &mut Shared<[F]>) -> F {
    let unit = UNIT_POS as usize;
    shared[unit] = value;
    sync_cube();
    let mut stride = (CUBE_DIM_X / 2) as usize;
    while stride > 0 {
        if unit < stride {
            let other = shared[unit + stride];
            shared[unit] += other;
        }
        sync_cube();
        stride /= 2;
    }
    let total = shared[0];
    // Before the next reduction overwrites the slot total was read from.
    sync_cube();
    total
}

/// Group norm's groups, `groups` per sample of `group_channels` channels and `spatial`
/// positions each, and its epsilon.
#[derive(CubeLaunch, CubeType)]
pub struct Groups {
    groups: u32,
    group_channels: u32,
    spatial: u32,
    epsilon: f32,
}

#[cube]
impl Groups {
    /// The elements of `group` (of every sample's groups, one after another): one run.
    fn set(&self, group: usize) -> Set {
        let len = self.group_channels as usize * self.spatial as usize;
        Set::contiguous(group * len, len)
    }

    /// The channel of the `i`-th element of `group`.
    fn channel(&self, group: usize, i: usize) -> usize {
        (group % self.groups as usize) * self.group_channels as usize + i / self.spatial as usize
    }

    /// `sqrt(var + epsilon)`.
    fn std<F: Float>(&self, var: F) -> F {
        (var + F::cast_from(self.epsilon)).sqrt()
    }
}

/// Batch norm's virtual batches: `chunks` of `ghost` samples (the last one the rest) of
/// `spatial` positions, and its epsilon.
#[derive(CubeLaunch, CubeType)]
pub struct VirtualBatches {
    spatial: u32,
    ghost: u32,
    pub chunks: u32,
    epsilon: f32,
}

#[cube]
impl VirtualBatches {
    /// `sqrt(var + epsilon)`.
    fn std<F: Float>(&self, var: F) -> F {
        (var + F::cast_from(self.epsilon)).sqrt()
    }
}

/// The elements a cube reduces: `count` of them in runs of `run` contiguous elements, one run
/// every `stride` from `start`. A group of one sample is a single run; a channel over the batch
/// is `N` runs of `S`, `C * S` apart.
#[derive(CubeType)]
struct Set {
    start: usize,
    run: usize,
    stride: usize,
    count: usize,
}

#[cube]
impl Set {
    /// The `len` elements from `start`.
    fn contiguous(start: usize, len: usize) -> Set {
        Set {
            start,
            run: len,
            stride: len,
            count: len,
        }
    }

    /// `channel` of `x: [N, C, S]` (`len` elements in all) over the batch and positions.
    fn channel(channel: usize, channels: usize, spatial: u32, len: usize) -> Set {
        let spatial = spatial as usize;
        Set {
            start: channel * spatial,
            run: spatial,
            stride: channels * spatial,
            count: len / channels,
        }
    }

    /// `channel` of `x: [N, C, S]` (`len` elements in all) over the positions and the samples
    /// of virtual batch `chunk` of `batches`.
    fn virtual_batch(
        channel: usize,
        channels: usize,
        len: usize,
        batches: &VirtualBatches,
        chunk: u32,
    ) -> Set {
        let spatial = batches.spatial as usize;
        let samples = len / (channels * spatial);
        let first = (chunk * batches.ghost) as usize;
        let mut size = batches.ghost as usize;
        if chunk + 1 == batches.chunks {
            size = samples - first;
        }
        Set {
            start: (first * channels + channel) * spatial,
            run: spatial,
            stride: channels * spatial,
            count: size * spatial,
        }
    }

    /// Where the set's `i`-th element lies.
    fn at(&self, i: usize) -> usize {
        let r = i / self.run;
        self.start + r * self.stride + (i - r * self.run)
    }
}

/// `(shift, offset)` of the set's elements of `x`, both zero when not `center`ed (RMS norm,
/// FRN: `x` itself is "centred").
#[cube]
fn set_centre<F: Float>(
    x: &Tensor<F>,
    set: &Set,
    shared: &mut Shared<[F]>,
    #[comptime] center: bool,
) -> (F, F) {
    let mut shift = F::new(0.0);
    let mut offset = F::new(0.0);
    if center {
        shift = x[set.at(0)];
        let mut sum = F::new(0.0);
        let mut i = UNIT_POS as usize;
        while i < set.count {
            sum += x[set.at(i)] - shift;
            i += CUBE_DIM_X as usize;
        }
        offset = cube_sum::<F>(sum, shared) / F::cast_from(set.count);
    }
    (shift, offset)
}

/// Adds up every unit's `Σ dy` and `Σ dy * x_hat` and writes them as `channel`'s `dbeta` and
/// `dgamma`; returns both totals.
#[cube]
fn write_affine_grads<F: Float>(
    sum_dy: F,
    sum_dy_x_hat: F,
    dgamma: &mut Tensor<F>,
    dbeta: &mut Tensor<F>,
    channel: usize,
    shared: &mut Shared<[F]>,
) -> (F, F) {
    let sum_dy = cube_sum::<F>(sum_dy, shared);
    let sum_dy_x_hat = cube_sum::<F>(sum_dy_x_hat, shared);
    if UNIT_POS == 0 {
        dgamma[channel] = sum_dy_x_hat;
        dbeta[channel] = sum_dy;
    }
    (sum_dy, sum_dy_x_hat)
}

/// The mean square of the set's elements of `x` centred as `(x - shift) - offset`: the biased
/// variance (the mean square itself when both are zero).
#[cube]
fn set_variance<F: Float>(
    x: &Tensor<F>,
    set: &Set,
    shift: F,
    offset: F,
    shared: &mut Shared<[F]>,
) -> F {
    let mut squares = F::new(0.0);
    let mut i = UNIT_POS as usize;
    while i < set.count {
        let centred = (x[set.at(i)] - shift) - offset;
        squares += centred * centred;
        i += CUBE_DIM_X as usize;
    }
    cube_sum::<F>(squares, shared) / F::cast_from(set.count)
}

/// Group norm, one cube per group of a sample: `y`, and each group's mean and (biased) variance
/// (the mean square when not `center`ed).
#[cube(launch)]
pub fn group_norm<F: Float>(
    x: &Tensor<F>,
    gamma: &Tensor<F>,
    beta: &Tensor<F>,
    y: &mut Tensor<F>,
    mean_out: &mut Tensor<F>,
    var_out: &mut Tensor<F>,
    groups: Groups,
    #[comptime] center: bool,
    #[comptime] block: usize,
    #[define(F)] _dtype: ElemType,
) {
    let group = CUBE_POS;
    if group >= mean_out.len() {
        terminate!();
    }
    let mut shared = Shared::<[F]>::new_slice(block);
    let set = groups.set(group);
    let (shift, offset) = set_centre::<F>(x, &set, &mut shared, center);
    let var = set_variance::<F>(x, &set, shift, offset, &mut shared);
    let inv_std = F::new(1.0) / groups.std::<F>(var);

    let mut i = UNIT_POS as usize;
    while i < set.count {
        let channel = groups.channel(group, i);
        let x_hat = ((x[set.start + i] - shift) - offset) * inv_std;
        y[set.start + i] = x_hat * gamma[channel] + beta[channel];
        i += block;
    }
    if UNIT_POS == 0 {
        mean_out[group] = shift + offset;
        var_out[group] = var;
    }
}

/// The input gradient of group norm, one cube per group: with `g = dy * gamma` and
/// `x_hat = (x - mean) / std`, `dx = (g - mean(g) - x_hat * mean(g * x_hat)) / std` (without
/// `mean(g)` when not `center`ed). Also writes each group's `shift` and `offset`, for
/// [`group_norm_params`].
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn group_norm_input_grad<F: Float>(
    x: &Tensor<F>,
    dy: &Tensor<F>,
    gamma: &Tensor<F>,
    var: &Tensor<F>,
    dx: &mut Tensor<F>,
    shift_out: &mut Tensor<F>,
    offset_out: &mut Tensor<F>,
    groups: Groups,
    #[comptime] center: bool,
    #[comptime] block: usize,
    #[define(F)] _dtype: ElemType,
) {
    let group = CUBE_POS;
    if group >= var.len() {
        terminate!();
    }
    let mut shared = Shared::<[F]>::new_slice(block);
    let set = groups.set(group);
    let (start, count) = (set.start, F::cast_from(set.count));
    let (shift, offset) = set_centre::<F>(x, &set, &mut shared, center);
    let inv_std = F::new(1.0) / groups.std::<F>(var[group]);
    let mut sum_g = F::new(0.0);
    let mut sum_g_x_hat = F::new(0.0);
    let mut i = UNIT_POS as usize;
    while i < set.count {
        let g = dy[start + i] * gamma[groups.channel(group, i)];
        sum_g += g;
        sum_g_x_hat += g * ((x[start + i] - shift) - offset) * inv_std;
        i += block;
    }
    let mut mean_g = F::new(0.0);
    if center {
        mean_g = cube_sum::<F>(sum_g, &mut shared) / count;
    }
    let mean_g_x_hat = cube_sum::<F>(sum_g_x_hat, &mut shared) / count;

    let mut i = UNIT_POS as usize;
    while i < set.count {
        let g = dy[start + i] * gamma[groups.channel(group, i)];
        let x_hat = ((x[start + i] - shift) - offset) * inv_std;
        dx[start + i] = (g - mean_g - x_hat * mean_g_x_hat) * inv_std;
        i += block;
    }
    if UNIT_POS == 0 {
        shift_out[group] = shift;
        offset_out[group] = offset;
    }
}

/// The parameter gradients of group norm, one cube per channel: `dgamma = Σ dy * x_hat` and
/// `dbeta = Σ dy` over the batch and positions, from each group's `shift`, `offset` and `var`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn group_norm_params<F: Float>(
    x: &Tensor<F>,
    dy: &Tensor<F>,
    shift: &Tensor<F>,
    offset: &Tensor<F>,
    var: &Tensor<F>,
    dgamma: &mut Tensor<F>,
    dbeta: &mut Tensor<F>,
    groups: Groups,
    #[comptime] block: usize,
    #[define(F)] _dtype: ElemType,
) {
    let channel = CUBE_POS;
    if channel >= dgamma.len() {
        terminate!();
    }
    let set = Set::channel(channel, dgamma.len(), groups.spatial, x.len());
    let group_in_sample = channel / groups.group_channels as usize;
    let mut shared = Shared::<[F]>::new_slice(block);

    let mut sum_dy = F::new(0.0);
    let mut sum_dy_x_hat = F::new(0.0);
    let mut i = UNIT_POS as usize;
    while i < set.count {
        let at = set.at(i);
        let stat = (i / set.run) * groups.groups as usize + group_in_sample;
        let centred = (x[at] - shift[stat]) - offset[stat];
        let x_hat = centred / groups.std::<F>(var[stat]);
        sum_dy += dy[at];
        sum_dy_x_hat += dy[at] * x_hat;
        i += block;
    }
    write_affine_grads::<F>(sum_dy, sum_dy_x_hat, dgamma, dbeta, channel, &mut shared);
}

/// Batch norm in training, one cube per channel: `y`, and the channel's mean and biased
/// variance over the positions and the samples of each of `chunks` virtual batches of `ghost`
/// (the last one the rest), written batch after batch.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn batch_norm<F: Float>(
    x: &Tensor<F>,
    gamma: &Tensor<F>,
    beta: &Tensor<F>,
    y: &mut Tensor<F>,
    mean_out: &mut Tensor<F>,
    var_out: &mut Tensor<F>,
    batches: VirtualBatches,
    #[comptime] block: usize,
    #[define(F)] _dtype: ElemType,
) {
    let channel = CUBE_POS;
    let channels = gamma.len();
    if channel >= channels {
        terminate!();
    }
    let mut shared = Shared::<[F]>::new_slice(block);
    let mut chunk = 0u32;
    while chunk < batches.chunks {
        let set = Set::virtual_batch(channel, channels, x.len(), &batches, chunk);
        let (shift, offset) = set_centre::<F>(x, &set, &mut shared, true);
        let var = set_variance::<F>(x, &set, shift, offset, &mut shared);
        let scale = gamma[channel] / batches.std::<F>(var);

        let mut i = UNIT_POS as usize;
        while i < set.count {
            let at = set.at(i);
            y[at] = ((x[at] - shift) - offset) * scale + beta[channel];
            i += block;
        }
        if UNIT_POS == 0 {
            let stat = chunk as usize * channels + channel;
            mean_out[stat] = shift + offset;
            var_out[stat] = var;
        }
        chunk += 1;
    }
}

/// The gradients of batch norm in training, one cube per channel, per virtual batch of `M`
/// values (as [`batch_norm`] cuts them):
/// `dx = gamma / std * (dy - Σ dy / M - x_hat * Σ dy * x_hat / M)`; `dgamma = Σ dy * x_hat`,
/// `dbeta = Σ dy` added up over the virtual batches, the last one first (as on the CPU).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_grads<F: Float>(
    x: &Tensor<F>,
    dy: &Tensor<F>,
    gamma: &Tensor<F>,
    var: &Tensor<F>,
    dx: &mut Tensor<F>,
    dgamma: &mut Tensor<F>,
    dbeta: &mut Tensor<F>,
    batches: VirtualBatches,
    #[comptime] block: usize,
    #[define(F)] _dtype: ElemType,
) {
    let channel = CUBE_POS;
    let channels = gamma.len();
    if channel >= channels {
        terminate!();
    }
    let mut shared = Shared::<[F]>::new_slice(block);
    let mut total_dy = F::new(0.0);
    let mut total_dy_x_hat = F::new(0.0);
    let mut chunk = batches.chunks;
    while chunk > 0 {
        chunk -= 1;
        let set = Set::virtual_batch(channel, channels, x.len(), &batches, chunk);
        let (shift, offset) = set_centre::<F>(x, &set, &mut shared, true);
        let stat = chunk as usize * channels + channel;
        let inv_std = F::new(1.0) / batches.std::<F>(var[stat]);
        let mut sum_dy = F::new(0.0);
        let mut sum_dy_x_hat = F::new(0.0);
        let mut i = UNIT_POS as usize;
        while i < set.count {
            let at = set.at(i);
            sum_dy += dy[at];
            sum_dy_x_hat += dy[at] * ((x[at] - shift) - offset) * inv_std;
            i += block;
        }
        let sum_dy = cube_sum::<F>(sum_dy, &mut shared);
        let sum_dy_x_hat = cube_sum::<F>(sum_dy_x_hat, &mut shared);
        total_dy += sum_dy;
        total_dy_x_hat += sum_dy_x_hat;
        let mean_dy = sum_dy / F::cast_from(set.count);
        let mean_dy_x_hat = sum_dy_x_hat / F::cast_from(set.count);
        let scale = gamma[channel] * inv_std;

        let mut i = UNIT_POS as usize;
        while i < set.count {
            let at = set.at(i);
            let x_hat = ((x[at] - shift) - offset) * inv_std;
            dx[at] = scale * (dy[at] - mean_dy - x_hat * mean_dy_x_hat);
            i += block;
        }
    }
    if UNIT_POS == 0 {
        dgamma[channel] = total_dy_x_hat;
        dbeta[channel] = total_dy;
    }
}

/// `(x - centre[c]) * scale[c] + shift[c]`, one unit per element.
#[cube(launch)]
pub fn channel_affine<F: Float>(
    x: &Tensor<F>,
    centre: &Tensor<F>,
    scale: &Tensor<F>,
    shift: &Tensor<F>,
    y: &mut Tensor<F>,
    spatial: u32,
    #[define(F)] _dtype: ElemType,
) {
    if ABSOLUTE_POS >= y.len() {
        terminate!();
    }
    let channel = (ABSOLUTE_POS / spatial as usize) % scale.len();
    y[ABSOLUTE_POS] = (x[ABSOLUTE_POS] - centre[channel]) * scale[channel] + shift[channel];
}

/// The gradients of [`channel_affine`], one cube per channel: `dx = dy * scale`,
/// `dscale = Σ dy * (x - centre)`, `dshift = Σ dy`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn channel_affine_grads<F: Float>(
    x: &Tensor<F>,
    dy: &Tensor<F>,
    centre: &Tensor<F>,
    scale: &Tensor<F>,
    dx: &mut Tensor<F>,
    dscale: &mut Tensor<F>,
    dshift: &mut Tensor<F>,
    spatial: u32,
    #[comptime] block: usize,
    #[define(F)] _dtype: ElemType,
) {
    let channel = CUBE_POS;
    if channel >= scale.len() {
        terminate!();
    }
    let set = Set::channel(channel, scale.len(), spatial, x.len());
    let mut shared = Shared::<[F]>::new_slice(block);

    let mut sum_dy = F::new(0.0);
    let mut sum_dy_centred = F::new(0.0);
    let mut i = UNIT_POS as usize;
    while i < set.count {
        let at = set.at(i);
        sum_dy += dy[at];
        sum_dy_centred += dy[at] * (x[at] - centre[channel]);
        dx[at] = dy[at] * scale[channel];
        i += block;
    }
    write_affine_grads::<F>(sum_dy, sum_dy_centred, dscale, dshift, channel, &mut shared);
}
