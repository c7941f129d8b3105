//! Online Normalization's per-sample forward and its control-process backward (Chiley et al.
//! 2019), as a burn custom op: the backward is not the gradient of the forward, so burn's
//! autodiff cannot derive it.
//!
//! Both passes walk the batch sample by sample in index order, carrying a per-channel state
//! from sample to sample and from call to call: the forward's running mean and variance, the
//! backward's two error accumulators. They run on the host, over the tensors' data, which any
//! backend can give (on flex, and with the `wgpu` feature on burn's CubeCL backends, where each
//! pass reads its tensors back); the state lives beside the layer in an [`OnlineStream`].

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
use burn::tensor::{TensorData, read_sync};

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

/// A tensor's values as `f64`, row-major.
fn host(data: TensorData) -> Vec<f64> {
    data.iter::<f64>().collect()
}

/// The `[N, C, S]` of a rank-3 tensor.
fn dims3(shape: &[usize]) -> [usize; 3] {
    [shape[0], shape[1], shape[2]]
}

/// The positions of sample `n` that are real.
fn real_positions(weights: &[f64], n: usize, s: usize) -> Vec<usize> {
    (0..s).filter(|&p| weights[n * s + p] > 0.0).collect()
}

/// The forward over `x` and `weights` (host data): the output, the scale `sqrt(var + eps)` each
/// sample was divided by (`[N, C]`), and the stream advanced past every real sample.
pub(crate) fn forward_host(
    x: &[f64],
    weights: &[f64],
    [n, c, s]: [usize; 3],
    stream: &OnlineStream,
) -> (Vec<f64>, Vec<f64>) {
    let mut state = stream.lock();
    let a = stream.alpha_forward;
    let mut y = vec![0.0; n * c * s];
    let mut scales = vec![1.0; n * c];
    for sample in 0..n {
        let real = real_positions(weights, sample, s);
        if real.is_empty() {
            continue;
        }
        for channel in 0..c {
            let row = (sample * c + channel) * s;
            let (mean, var) = (state.mean[channel], state.var[channel]);
            let scale = (var + stream.epsilon).sqrt();
            scales[sample * c + channel] = scale;
            for &p in &real {
                y[row + p] = (x[row + p] - mean) / scale;
            }
            let count = real.len() as f64;
            let sample_mean = real.iter().map(|&p| x[row + p]).sum::<f64>() / count;
            let sample_var = real
                .iter()
                .map(|&p| (x[row + p] - sample_mean).powi(2))
                .sum::<f64>()
                / count;
            let d = sample_mean - mean;
            state.var[channel] = a * var + (1.0 - a) * sample_var + a * (1.0 - a) * d * d;
            state.mean[channel] = mean + (1.0 - a) * d;
        }
    }
    (y, scales)
}

/// The control-process backward over the output gradient `g`, the forward's output `y` and
/// scales (host data): the input gradient, with the stream's accumulators advanced.
pub(crate) fn backward_host(
    g: &[f64],
    y: &[f64],
    scales: &[f64],
    weights: &[f64],
    [n, c, s]: [usize; 3],
    stream: &OnlineStream,
) -> Vec<f64> {
    let mut state = stream.lock();
    let keep = 1.0 - stream.alpha_backward;
    let mut dx = vec![0.0; n * c * s];
    for sample in 0..n {
        let real = real_positions(weights, sample, s);
        if real.is_empty() {
            continue;
        }
        let count = real.len() as f64;
        for channel in 0..c {
            let row = (sample * c + channel) * s;
            let v = state.v[channel];
            // Remove the projection of the gradient on the output, then undo the scale.
            let corrected: Vec<f64> = real
                .iter()
                .map(|&p| g[row + p] - keep * v * y[row + p])
                .collect();
            let along_y = real
                .iter()
                .zip(&corrected)
                .map(|(&p, gt)| gt * y[row + p])
                .sum::<f64>();
            state.v[channel] = v + along_y / count;
            let scale = scales[sample * c + channel];
            // Remove the projection on the constant.
            let u = state.u[channel];
            let mut total = 0.0;
            for (&p, gt) in real.iter().zip(&corrected) {
                let d = gt / scale - keep * u;
                dx[row + p] = d;
                total += d;
            }
            state.u[channel] = u + total / count;
        }
    }
    dx
}

/// Online Normalization as a backend op: the host passes above, with a hand-written backward
/// on autodiff backends. burn's fusion backend (wgpu) runs the same bodies.
#[backend_extension(
    Flex,
    Cube: cfg(feature = "wgpu"),
    Fusion: cfg(feature = "wgpu"),
    Autodiff
)]
pub(crate) trait OnlineNormOps: Backend {
    /// `x: [N, C, S]`, `weights: [N, 1, S]` -> `(y: [N, C, S], scales: [N, C])`.
    #[fusion(default)]
    fn online_forward(
        x: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        stream: OnlineStream,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dtype, device, shape) = (x.dtype(), x.device(), dims3(&x.shape()));
        let read = |t| host(read_sync(Self::float_into_data(t)).expect("readable tensor"));
        let (x, weights) = (read(x), read(weights));
        let (y, scales) = forward_host(&x, &weights, shape, &stream);
        let [n, c, _] = shape;
        let y = TensorData::new(y, shape).convert_dtype(dtype);
        let scales = TensorData::new(scales, [n, c]).convert_dtype(dtype);
        (
            Self::float_from_data(y, &device),
            Self::float_from_data(scales, &device),
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
        let read = |t| host(read_sync(Self::float_into_data(t)).expect("readable tensor"));
        let (g, y, scales, weights) = (read(grad), read(y), read(scales), read(weights));
        let dx = backward_host(&g, &y, &scales, &weights, shape, &stream);
        Self::float_from_data(TensorData::new(dx, shape).convert_dtype(dtype), &device)
    }
}

impl OnlineNormOps for Flex {}

#[cfg(feature = "wgpu")]
impl OnlineNormOps for burn_cubecl::CubeBackend {}

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

    fn online_backward(
        grad: FloatTensor<Self>,
        y: FloatTensor<Self>,
        scales: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        stream: OnlineStream,
    ) -> FloatTensor<Self> {
        let inner = B::online_backward(
            grad.into_primitive(),
            y.into_primitive(),
            scales.into_primitive(),
            weights.into_primitive(),
            stream,
        );
        <Autodiff<B, C> as AutodiffBackend>::from_inner(inner)
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
