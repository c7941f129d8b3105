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
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata,
    backend_extension,
};
use burn::prelude::*;
use burn::tensor::{Element, TensorData, read_sync};
use rayon::prelude::*;

use crate::kernel::fused::Real;

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
    let x = |i: usize| x[i].to_f64();
    let real = real_positions(weights, shape);
    let start: Vec<(f64, f64)> = state
        .mean
        .iter()
        .copied()
        .zip(state.var.iter().copied())
        .collect();
    let (y, blocks) = by_channel_block(shape, T::default(), |channels, y| {
        let mut stats: Vec<(f64, f64)> = start[channels.clone()].to_vec();
        let mut scales = vec![1.0; n * channels.len()];
        for (sample, real) in real.iter().enumerate() {
            if real.is_empty() {
                continue;
            }
            for (j, (mean, var)) in stats.iter_mut().enumerate() {
                let (row, out) = ((sample * c + channels.start + j) * s, j * s);
                let scale = (*var + stream.epsilon).sqrt();
                scales[sample * channels.len() + j] = scale;
                for &p in real {
                    y[sample][out + p] = T::from_f64((x(row + p) - *mean) / scale);
                }
                let count = real.len() as f64;
                let sample_mean = real.iter().map(|&p| x(row + p)).sum::<f64>() / count;
                let sample_var = real
                    .iter()
                    .map(|&p| (x(row + p) - sample_mean).powi(2))
                    .sum::<f64>()
                    / count;
                let d = sample_mean - *mean;
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
    let (g, y) = (|i: usize| g[i].to_f64(), |i: usize| y[i].to_f64());
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
        let mut accumulators: Vec<(f64, f64)> = start[channels.clone()].to_vec();
        for (sample, real) in real.iter().enumerate() {
            if real.is_empty() {
                continue;
            }
            let count = real.len() as f64;
            for (j, (u, v)) in accumulators.iter_mut().enumerate() {
                let channel = channels.start + j;
                let (row, out) = ((sample * c + channel) * s, j * s);
                // Remove the projection of the gradient on the output, then undo the scale.
                let corrected = |p: usize| g(row + p) - keep * *v * y(row + p);
                let along_y = real.iter().map(|&p| corrected(p) * y(row + p)).sum::<f64>();
                let scale = scales[sample * c + channel].to_f64();
                // Remove the projection on the constant.
                let mut total = 0.0;
                for &p in real {
                    let d = corrected(p) / scale - keep * *u;
                    dx[sample][out + p] = T::from_f64(d);
                    total += d;
                }
                *v += along_y / count;
                *u += total / count;
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
        let (dtype, device, shape) = (x.dtype(), x.device(), dims3(&x.shape()));
        let read = |t| read_sync(Self::float_into_data(t)).expect("readable tensor");
        let (x, weights) = (read(x), host::<f64>(read(weights)));
        let [n, c, _] = shape;
        let (y, scales) = on_host_floats!(dtype, |T| {
            let (y, scales) = forward_host(&host::<T>(x), &weights, shape, &stream);
            (TensorData::new(y, shape), TensorData::new(scales, [n, c]))
        });
        (
            Self::float_from_data(y.convert_dtype(dtype), &device),
            Self::float_from_data(scales.convert_dtype(dtype), &device),
        )
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
        let (dtype, device, shape) = (grad.dtype(), grad.device(), dims3(&grad.shape()));
        let read = |t| read_sync(Self::float_into_data(t)).expect("readable tensor");
        let weights = host::<f64>(read(weights));
        let dx = on_host_floats!(dtype, |T| {
            let (g, y, scales) = (
                host::<T>(read(grad)),
                host::<T>(read(y)),
                host::<T>(read(scales)),
            );
            TensorData::new(
                backward_host(&g, &y, &scales, &weights, shape, &stream),
                shape,
            )
        });
        Self::float_from_data(dx.convert_dtype(dtype), &device)
    }
}

impl OnlineNormOps for Flex {}

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
