//! Online Normalization's per-sample forward and its control-process backward (Chiley et al.
//! 2019), as a burn custom op: the backward is not the gradient of the forward, so burn's
//! autodiff cannot derive it.
//!
//! Both passes walk the batch sample by sample in index order, carrying a per-channel state
//! from sample to sample and from call to call: the forward's running mean and variance, the
//! backward's two error accumulators. They run on the host, over the tensors' data, which any
//! backend can give (on flex, and with the `wgpu` feature on burn's CubeCL backends, where each
//! pass reads its tensors back); the state lives beside the layer in an [`OnlineStream`].
//! Channels are independent, so blocks of them run in parallel, each walking the samples in
//! order: the arithmetic, in `f64`, is the same value by value whatever the threads (tested
//! against the sequential loops, to the bit).

use std::sync::{Arc, Mutex};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata,
    backend_extension,
};
use burn::prelude::*;
use burn::tensor::{DType, Element, TensorData, read_sync};
use rayon::prelude::*;

use crate::kernel::fused::{Real, flex_tensor};

/// The state Online Normalization streams through its samples, per channel.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StreamState {
    /// The forward's running mean and variance.
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
    /// The backward's accumulators of the gradient's projection on the output (`v`, the paper's
    /// `eps^(y)`) and on the constant (`u`, the paper's `eps^(1)`).
    pub u: Vec<f64>,
    pub v: Vec<f64>,
}

/// A layer's stream: its state, shared with the backward passes of the outputs it produced, and
/// the constants of the recurrences.
#[derive(Debug, Clone)]
pub(crate) struct OnlineStream {
    pub state: Arc<Mutex<StreamState>>,
    pub alpha_forward: f64,
    pub alpha_backward: f64,
    pub epsilon: f64,
}

impl OnlineStream {
    fn lock(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A tensor's values as `T`, row-major: its own when it holds `T`, converted otherwise.
fn host<T: Element>(data: TensorData) -> Vec<T> {
    data.convert_dtype(T::dtype())
        .try_into_vec()
        .expect("tensor data of its own type")
}

/// Runs `$body` with `$t` the type the host passes read and write a tensor of `$dtype` in: `f32`
/// for `f32` tensors, `f64` for every other float (whose values `f64` holds exactly).
macro_rules! on_host_floats {
    ($dtype:expr, |$t:ident| $body:expr) => {
        match $dtype {
            burn::tensor::DType::F32 => {
                type $t = f32;
                $body
            }
            _ => {
                type $t = f64;
                $body
            }
        }
    };
}

/// The `[N, C, S]` of a rank-3 tensor.
fn dims3(shape: &[usize]) -> [usize; 3] {
    [shape[0], shape[1], shape[2]]
}

/// The real positions of every sample.
fn real_positions(weights: &[f64], [n, _, s]: [usize; 3]) -> Vec<Vec<usize>> {
    (0..n)
        .map(|sample| (0..s).filter(|&p| weights[sample * s + p] > 0.0).collect())
        .collect()
}

/// How many channels a parallel task of the host passes walks, sample after sample.
const CHANNEL_BLOCK: usize = 8;

/// Runs `per_block(channels, rows)` for blocks of [`CHANNEL_BLOCK`] channels in parallel, each
/// writing its channels' rows of the `[N, C, S]` output (`rows[sample]`: that sample's
/// `channels.len() * S` values), and returns the output (`fill` where nothing is written) and
/// each block's result, in channel order. A channel's recurrence runs sample after sample, in
/// the same order whatever the threads.
fn by_channel_block<T: Real, R: Send>(
    [n, c, s]: [usize; 3],
    fill: T,
    per_block: impl Fn(std::ops::Range<usize>, &mut [&mut [T]]) -> R + Sync,
) -> (Vec<T>, Vec<R>) {
    let mut out = vec![fill; n * c * s];
    let blocks = c.div_ceil(CHANNEL_BLOCK);
    let mut rows: Vec<Vec<&mut [T]>> = (0..blocks).map(|_| Vec::with_capacity(n)).collect();
    for sample in out.chunks_mut((c * s).max(1)).take(n) {
        let mut rest = sample;
        for block in &mut rows {
            let (here, after) = rest.split_at_mut((CHANNEL_BLOCK * s).min(rest.len()));
            block.push(here);
            rest = after;
        }
    }
    let results = rows
        .into_par_iter()
        .enumerate()
        .map(|(block, mut rows)| {
            let channels = block * CHANNEL_BLOCK..((block + 1) * CHANNEL_BLOCK).min(c);
            per_block(channels, &mut rows)
        })
        .collect();
    (out, results)
}

/// Where `f64`'s [`Iterator::sum`] starts. The sums below add their terms one after another
/// from it, as that method does, so they give its bits.
fn sum_start() -> f64 {
    std::iter::empty::<f64>().sum()
}

/// For each lane `j` of a block, the sum of `term(j, p)` over `positions` in their order, from
/// `start`: the lanes' sums are interleaved, so that each addition overlaps the other lanes'
/// instead of waiting on the one before it in its own sum, and every lane adds its own terms in
/// the same order as a sum of its own would. Lanes past a tail block's channels add whatever
/// `term` gives them (it repeats a real channel), and are not read.
fn lane_sums(
    start: f64,
    positions: &[usize],
    term: impl Fn(usize, usize) -> f64,
) -> [f64; CHANNEL_BLOCK] {
    let mut sums = [start; CHANNEL_BLOCK];
    for &p in positions {
        for (j, sum) in sums.iter_mut().enumerate() {
            *sum += term(j, p);
        }
    }
    sums
}

/// Row `channel` of `sample` in an `[N, C, S]` buffer.
fn row<T>(buffer: &[T], [_, c, s]: [usize; 3], sample: usize, channel: usize) -> &[T] {
    &buffer[(sample * c + channel) * s..][..s]
}

/// The forward over `x` and `weights` (host data): the output, the scale `sqrt(var + eps)` each
/// sample was divided by (`[N, C]`), and the stream advanced past every real sample. Computed
/// in `f64` whatever `T`; channels run in parallel, each walking its samples in order.
pub(crate) fn forward_host<T: Real>(
    x: &[T],
    weights: &[f64],
    shape @ [n, c, s]: [usize; 3],
    stream: &OnlineStream,
) -> (Vec<T>, Vec<T>) {
    let mut state = stream.lock();
    let a = stream.alpha_forward;
    let real = real_positions(weights, shape);
    let start: Vec<(f64, f64)> = state
        .mean
        .iter()
        .copied()
        .zip(state.var.iter().copied())
        .collect();
    let (y, blocks) = by_channel_block(shape, T::default(), |channels, y| {
        let width = channels.len();
        let mut stats: Vec<(f64, f64)> = start[channels.clone()].to_vec();
        let mut scales = vec![1.0; n * width];
        for (sample, real) in real.iter().enumerate() {
            if real.is_empty() {
                continue;
            }
            // The block's rows of this sample; a tail block repeats its last channel.
            let x_rows: [&[T]; CHANNEL_BLOCK] =
                std::array::from_fn(|j| row(x, shape, sample, channels.start + j.min(width - 1)));
            for (j, &(mean, var)) in stats.iter().enumerate() {
                let scale = (var + stream.epsilon).sqrt();
                scales[sample * width + j] = scale;
                let out = &mut y[sample][j * s..][..s];
                if real.len() == s {
                    // Every position: a loop over whole rows, which the compiler vectorizes.
                    for (y, &x) in out.iter_mut().zip(x_rows[j]) {
                        *y = T::from_f64((x.to_f64() - mean) / scale);
                    }
                } else {
                    for &p in real {
                        out[p] = T::from_f64((x_rows[j][p].to_f64() - mean) / scale);
                    }
                }
            }
            let count = real.len() as f64;
            let sums = lane_sums(sum_start(), real, |j, p| x_rows[j][p].to_f64());
            let sample_means = sums.map(|sum| sum / count);
            let squares = lane_sums(sum_start(), real, |j, p| {
                (x_rows[j][p].to_f64() - sample_means[j]).powi(2)
            });
            for (j, (mean, var)) in stats.iter_mut().enumerate() {
                let sample_var = squares[j] / count;
                let d = sample_means[j] - *mean;
                *var = a * *var + (1.0 - a) * sample_var + a * (1.0 - a) * d * d;
                *mean += (1.0 - a) * d;
            }
        }
        (channels, stats, scales)
    });
    let mut scales = vec![T::from_f64(1.0); n * c];
    for (channels, stats, block_scales) in blocks {
        let width = channels.len();
        for (j, channel) in channels.enumerate() {
            (state.mean[channel], state.var[channel]) = stats[j];
            for sample in 0..n {
                scales[sample * c + channel] = T::from_f64(block_scales[sample * width + j]);
            }
        }
    }
    (y, scales)
}

/// The control-process backward over the output gradient `g`, the forward's output `y` and
/// scales (host data): the input gradient, with the stream's accumulators advanced. Computed in
/// `f64` whatever `T`; channels run in parallel, each walking its samples in order.
pub(crate) fn backward_host<T: Real>(
    g: &[T],
    y: &[T],
    scales: &[T],
    weights: &[f64],
    shape @ [_, c, s]: [usize; 3],
    stream: &OnlineStream,
) -> Vec<T> {
    let mut state = stream.lock();
    let keep = 1.0 - stream.alpha_backward;
    let real = real_positions(weights, shape);
    let start: Vec<(f64, f64)> = state
        .u
        .iter()
        .copied()
        .zip(state.v.iter().copied())
        .collect();
    let (dx, blocks) = by_channel_block(shape, T::default(), |channels, dx| {
        let width = channels.len();
        let mut accumulators: Vec<(f64, f64)> = start[channels.clone()].to_vec();
        // The block's input gradients of one sample in f64, which its accumulator sums.
        let mut d_rows = vec![0.0; CHANNEL_BLOCK * s];
        for (sample, real) in real.iter().enumerate() {
            if real.is_empty() {
                continue;
            }
            let count = real.len() as f64;
            // A tail block's lanes repeat its last channel.
            let lane = |j: usize| channels.start + j.min(width - 1);
            let g_rows: [&[T]; CHANNEL_BLOCK] =
                std::array::from_fn(|j| row(g, shape, sample, lane(j)));
            let y_rows: [&[T]; CHANNEL_BLOCK] =
                std::array::from_fn(|j| row(y, shape, sample, lane(j)));
            let v: [f64; CHANNEL_BLOCK] =
                std::array::from_fn(|j| accumulators[lane(j) - channels.start].1);
            // Remove the projection of the gradient on the output, then undo the scale.
            let corrected =
                |j: usize, p: usize| g_rows[j][p].to_f64() - keep * v[j] * y_rows[j][p].to_f64();
            let along_y = lane_sums(sum_start(), real, |j, p| {
                corrected(j, p) * y_rows[j][p].to_f64()
            });
            for (j, &(u, _)) in accumulators.iter().enumerate() {
                let scale = scales[sample * c + channels.start + j].to_f64();
                // Remove the projection on the constant.
                let d_row = &mut d_rows[j * s..][..s];
                let out = &mut dx[sample][j * s..][..s];
                if real.len() == s {
                    // Every position: loops over whole rows, which the compiler vectorizes.
                    let rows = g_rows[j].iter().zip(y_rows[j]).zip(d_row.iter_mut());
                    for ((&g, &y), d) in rows {
                        *d = (g.to_f64() - keep * v[j] * y.to_f64()) / scale - keep * u;
                    }
                    for (out, &d) in out.iter_mut().zip(d_row.iter()) {
                        *out = T::from_f64(d);
                    }
                } else {
                    for &p in real {
                        d_row[p] = corrected(j, p) / scale - keep * u;
                        out[p] = T::from_f64(d_row[p]);
                    }
                }
            }
            // A tail block's spare lanes sum its last channel's row again.
            let totals = lane_sums(0.0, real, |j, p| d_rows[j.min(width - 1) * s + p]);
            for (j, (u, v)) in accumulators.iter_mut().enumerate() {
                *v += along_y[j] / count;
                *u += totals[j] / count;
            }
        }
        (channels, accumulators)
    });
    for (channels, accumulators) in blocks {
        for (channel, (u, v)) in channels.zip(accumulators) {
            (state.u[channel], state.v[channel]) = (u, v);
        }
    }
    dx
}

/// Online Normalization as a backend op: the host passes above, with a hand-written backward
/// on autodiff backends. burn's fusion backend (wgpu) runs the same bodies.
#[backend_extension(Flex, Cube: cfg(feature = "wgpu"), Fusion: cfg(feature = "wgpu"), Autodiff)]
pub(crate) trait OnlineNormOps: Backend {
    /// `x: [N, C, S]`, `weights: [N, 1, S]` -> `(y: [N, C, S], scales: [N, C])`.
    #[fusion(default)]
    fn online_forward(
        x: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        stream: OnlineStream,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        forward_on_host_copies::<Self>(x, weights, &stream)
    }

    /// The input gradient from the output gradient `grad`, the forward's `y` and `scales`.
    #[fusion(default)]
    fn online_backward(
        grad: FloatTensor<Self>,
        y: FloatTensor<Self>,
        scales: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        stream: OnlineStream,
    ) -> FloatTensor<Self> {
        backward_on_host_copies::<Self>(grad, y, scales, weights, &stream)
    }
}

/// A tensor's data on the host.
fn read<B: Backend>(tensor: FloatTensor<B>) -> TensorData {
    read_sync(B::float_into_data(tensor)).expect("readable tensor")
}

/// [`OnlineNormOps::online_forward`] on any backend: the tensors' data copied to the host and
/// the outputs copied back.
fn forward_on_host_copies<B: Backend>(
    x: FloatTensor<B>,
    weights: FloatTensor<B>,
    stream: &OnlineStream,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (dtype, device, shape) = (x.dtype(), x.device(), dims3(&x.shape()));
    let (x, weights) = (read::<B>(x), host::<f64>(read::<B>(weights)));
    let [n, c, _] = shape;
    let (y, scales) = on_host_floats!(dtype, |T| {
        let (y, scales) = forward_host(&host::<T>(x), &weights, shape, stream);
        (TensorData::new(y, shape), TensorData::new(scales, [n, c]))
    });
    (
        B::float_from_data(y.convert_dtype(dtype), &device),
        B::float_from_data(scales.convert_dtype(dtype), &device),
    )
}

/// [`OnlineNormOps::online_backward`] on any backend, through host copies.
fn backward_on_host_copies<B: Backend>(
    grad: FloatTensor<B>,
    y: FloatTensor<B>,
    scales: FloatTensor<B>,
    weights: FloatTensor<B>,
    stream: &OnlineStream,
) -> FloatTensor<B> {
    let (dtype, device, shape) = (grad.dtype(), grad.device(), dims3(&grad.shape()));
    let weights = host::<f64>(read::<B>(weights));
    let dx = on_host_floats!(dtype, |T| {
        let (g, y, scales) = (
            host::<T>(read::<B>(grad)),
            host::<T>(read::<B>(y)),
            host::<T>(read::<B>(scales)),
        );
        TensorData::new(
            backward_host(&g, &y, &scales, &weights, shape, stream),
            shape,
        )
    });
    B::float_from_data(dx.convert_dtype(dtype), &device)
}

/// On flex the passes read f32 and f64 tensors in their own buffers and hand theirs to the
/// outputs: no copies (an 8 MB activation was copied twice on the way in and once out). Other
/// float types take the host copies.
impl OnlineNormOps for Flex {
    fn online_forward(
        x: FlexTensor,
        weights: FlexTensor,
        stream: OnlineStream,
    ) -> (FlexTensor, FlexTensor) {
        let (dtype, shape) = (x.dtype(), dims3(x.layout().shape()));
        if !matches!(dtype, DType::F32 | DType::F64) {
            return forward_on_host_copies::<Self>(x, weights, &stream);
        }
        let [n, c, _] = shape;
        let weights = host::<f64>(read::<Self>(weights));
        let x = x.to_contiguous();
        crate::on_floats!(dtype, "online norm", |T| {
            let (y, scales) = forward_host::<T>(x.storage(), &weights, shape, &stream);
            (
                flex_tensor(y, &shape, dtype),
                flex_tensor(scales, &[n, c], dtype),
            )
        })
    }

    fn online_backward(
        grad: FlexTensor,
        y: FlexTensor,
        scales: FlexTensor,
        weights: FlexTensor,
        stream: OnlineStream,
    ) -> FlexTensor {
        let (dtype, shape) = (grad.dtype(), dims3(grad.layout().shape()));
        if !matches!(dtype, DType::F32 | DType::F64) {
            return backward_on_host_copies::<Self>(grad, y, scales, weights, &stream);
        }
        let weights = host::<f64>(read::<Self>(weights));
        let [grad, y, scales] = [grad, y, scales].map(|t| t.to_contiguous());
        crate::on_floats!(dtype, "online norm", |T| {
            let (g, y, scales) = (grad.storage(), y.storage(), scales.storage());
            let dx = backward_host::<T>(g, y, scales, &weights, shape, &stream);
            flex_tensor(dx, &shape, dtype)
        })
    }
}

#[cfg(feature = "wgpu")]
impl OnlineNormOps for burn_cubecl::CubeBackend {}

/// The forward records a node whose backward runs the inner backend's `online_backward`; the
/// backward keeps the trait's host body here, which nothing calls on autodiff tensors.
impl<B: Backend + OnlineNormOps, C: CheckpointStrategy> OnlineNormOps for Autodiff<B, C> {
    fn online_forward(
        x: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        stream: OnlineStream,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Debug)]
        struct ControlProcess;

        impl<B: Backend + OnlineNormOps> Backward<B, 1> for ControlProcess {
            type State = (
                B::FloatTensorPrimitive,
                B::FloatTensorPrimitive,
                B::FloatTensorPrimitive,
                OnlineStream,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (y, scales, weights, stream) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::online_backward(grad, y, scales, weights, stream)
                });
            }
        }

        let weights = weights.into_primitive();
        let prepared = ControlProcess
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let (y, scales) = B::online_forward(x.into_primitive(), weights.clone(), stream.clone());
        let y = match prepared {
            OpsKind::Tracked(prep) => prep.finish((y.clone(), scales.clone(), weights, stream), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, <Autodiff<B, C> as AutodiffBackend>::from_inner(scales))
    }
}

/// True when the online op runs on the device of `x` (flex, or a CubeCL backend with the
/// `wgpu` feature; with or without autodiff).
pub(crate) fn supported(x: &Tensor<3>) -> bool {
    match x.device().inner().as_dispatch() {
        DispatchDevice::Flex(_) => true,
        #[cfg(feature = "wgpu")]
        DispatchDevice::Cube(_) => true,
        #[allow(unreachable_patterns)] // flex alone
        _ => false,
    }
}

/// Online Normalization of `x: [N, C, S]` in training, `weights: [N, 1, S]`: each sample
/// normalized with the stream's statistics before it, which it then updates. On an autodiff
/// device the gradient is the control process. Call only where [`supported`].
pub(crate) fn online_normalize(
    x: Tensor<3>,
    weights: Tensor<3>,
    stream: &OnlineStream,
) -> Tensor<3> {
    let (y, _scales) = <Dispatch as OnlineNormOps>::online_forward(
        x.into_dispatch(),
        weights.into_dispatch(),
        stream.clone(),
    );
    Tensor::from_dispatch(y)
}

#[cfg(test)]
mod tests;
