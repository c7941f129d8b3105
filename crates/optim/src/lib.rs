//! burn's Adam with its update fused into one pass over each parameter on flex (burn's CPU
//! backend).
//!
//! burn's [`Adam`](burn::optim::Adam) updates a parameter with thirteen tensor ops, each a pass
//! over the parameter's size and a new tensor. Where a step is small (a batch of one example
//! through an MLP, the experiments' online learning) those passes are most of the step's time.
//! [`Adam`] reads the parameter, its gradient and the two moments once and writes the three
//! back, each value going through the same `f32` operations in the same order as in burn's
//! `AdaptiveMomentum::transform` and `Adam::step`, so the two give the same bits (tested over
//! several steps, with and without weight decay). On any other backend or float type it runs
//! burn's own step. The state is burn's [`AdamState`], so the two can take over each other's.

#![warn(missing_docs)]

mod flex;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, DispatchDevice, backend_extension};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{
    AdamConfig as BurnAdamConfig, AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer,
    Optimizer,
};
use burn::tensor::{DType, Device, Tensor};

/// [`Adam`]'s settings: burn's `AdamConfig` without AMSGrad.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// The first moment's decay. Default 0.9.
    pub beta_1: f32,
    /// The second moment's decay. Default 0.999.
    pub beta_2: f32,
    /// Added to the second moment's root. Default 1e-5 (burn's; PyTorch's is 1e-8).
    pub epsilon: f32,
    /// The L2 penalty added to the gradient (`grad + penalty * param`), if any. Default none.
    pub weight_decay: Option<f32>,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
            weight_decay: None,
        }
    }
}

impl AdamConfig {
    /// With `epsilon` added to the second moment's root.
    pub fn with_epsilon(self, epsilon: f32) -> Self {
        Self { epsilon, ..self }
    }

    /// With the L2 penalty `weight_decay`, or none.
    pub fn with_weight_decay(self, weight_decay: Option<f32>) -> Self {
        Self {
            weight_decay,
            ..self
        }
    }

    /// The optimizer, for a module's parameters.
    pub fn init(&self) -> ModuleOptimizer {
        ModuleOptimizer::from(self.build())
    }

    /// The optimizer, for one tensor at a time.
    pub fn build(&self) -> Adam {
        let composed = BurnAdamConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .with_weight_decay(self.weight_decay.map(WeightDecayConfig::new))
            .build();
        Adam {
            config: *self,
            composed,
        }
    }
}

/// Adam: fused on flex in `f32`, burn's step elsewhere (see the crate's documentation).
#[derive(Clone)]
pub struct Adam {
    config: AdamConfig,
    composed: burn::optim::Adam,
}

impl Optimizer for Adam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let moments = state.map(|s| (s.momentum.time, s.momentum.moment_1, s.momentum.moment_2));
        let on_flex_f32 = |t: &Tensor<D>| {
            t.dtype() == DType::F32
                && matches!(t.device().inner().as_dispatch(), DispatchDevice::Flex(_))
        };
        let fusable = on_flex_f32(&tensor)
            && on_flex_f32(&grad)
            && moments
                .as_ref()
                .is_none_or(|(_, m, v)| on_flex_f32(m) && on_flex_f32(v));
        if !fusable {
            let state =
                moments.map(|(time, m, v)| AdamState::new(AdaptiveMomentumState::new(time, m, v)));
            return self.composed.step(lr, tensor, grad, state);
        }
        let time = moments.as_ref().map_or(1, |(time, ..)| time + 1);
        let step = AdamStep::new(&self.config, time, lr, moments.is_none());
        // The first step has no moments to read: the gradient stands in, and is not read as one.
        let (m, v) = moments.map_or_else(|| (grad.clone(), grad.clone()), |(_, m, v)| (m, v));
        let (param, m, v) = <Dispatch as AdamOps>::adam_update(
            tensor.into_dispatch(),
            grad.into_dispatch(),
            m.into_dispatch(),
            v.into_dispatch(),
            step,
        );
        let [param, m, v] = [param, m, v].map(Tensor::from_dispatch);
        let momentum = AdaptiveMomentumState::new(time, m, v);
        (param, Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        burn::optim::Adam::to_device(state, device)
    }
}

/// The scalars of Adam's step number `time`, computed as burn computes them, in `f32`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamStep {
    /// The first step: the moments start from the gradient alone.
    first: bool,
    beta_1: f32,
    beta_2: f32,
    /// `1 - beta_1` and `1 - beta_2`.
    keep_1: f32,
    keep_2: f32,
    /// `sqrt(1 - beta_2^t) / (1 - beta_1^t)`: both bias corrections in one factor.
    correction: f32,
    /// `epsilon * sqrt(1 - beta_2^t)`.
    epsilon: f32,
    learning_rate: f32,
    weight_decay: Option<f32>,
}

impl AdamStep {
    fn new(config: &AdamConfig, time: usize, learning_rate: LearningRate, first: bool) -> Self {
        let t = time as i32;
        let root_correction_2 = (1.0 - config.beta_2.powi(t)).sqrt();
        Self {
            first,
            beta_1: config.beta_1,
            beta_2: config.beta_2,
            keep_1: 1.0 - config.beta_1,
            keep_2: 1.0 - config.beta_2,
            correction: root_correction_2 / (1.0 - config.beta_1.powi(t)),
            epsilon: config.epsilon * root_correction_2,
            // burn's `mul_scalar` on an f32 tensor rounds its f64 scalar to f32 the same way.
            learning_rate: learning_rate as f32,
            weight_decay: config.weight_decay,
        }
    }

    /// Updates one parameter value `p`, with gradient `g`, and its moments `m` and `v`, each
    /// operation and its order as in burn's composed step.
    #[inline(always)]
    fn apply(&self, p: &mut f32, g: f32, m: &mut f32, v: &mut f32) {
        let g = match self.weight_decay {
            Some(penalty) => *p * penalty + g,
            None => g,
        };
        if self.first {
            *m = g * self.keep_1;
            *v = (g * g) * self.keep_2;
        } else {
            *m = *m * self.beta_1 + g * self.keep_1;
            *v = *v * self.beta_2 + (g * g) * self.keep_2;
        }
        let update = (*m * self.correction) / (v.sqrt() + self.epsilon);
        *p -= update * self.learning_rate;
    }
}

/// Adam's update as a backend op: flex only (callers check).
#[backend_extension(Flex)]
pub(crate) trait AdamOps: Backend {
    /// `(param, grad, m, v)`, all of one shape, -> the updated `(param, m, v)`. On the first
    /// step `m` and `v` are not read.
    fn adam_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}
