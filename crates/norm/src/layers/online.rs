//! Online normalization (Chiley et al. 2019): statistics streamed sample by sample.

use std::sync::{Arc, Mutex};

use burn::module::{Flag, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::affine::apply_affine;
use crate::family::{Family, is_training};
use crate::kernel::{
    GroupSpec, OnlineStream, StreamState, group_norm, normalize_with, online_normalize,
    online_supported,
};
use crate::layers::{CommonParts, common_parts};
use crate::options::{CheckOptions, builder, check_common, invalid};
use crate::{Momentum, NormError, RunningStats, RunningVariance};

/// What Online Normalization does after its affine to keep errors from growing (the paper's
/// "error compensation mechanism").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCompensation {
    /// Divide each sample by its root mean square over all its features (no parameters), the
    /// paper's mechanism.
    #[default]
    LayerScaling,
    /// Clamp every output to `[-5, 5]`, the authors' later default.
    Clamp,
    /// Nothing.
    None,
}

/// Configuration of [`OnlineNorm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnlineNormConfig {
    /// Decay of the running mean and variance from sample to sample, the paper's `alpha_f`.
    /// Default `0.999`.
    pub alpha_forward: f64,
    /// Decay of the backward's error accumulators, the paper's `alpha_b`. Default `0.99`.
    pub alpha_backward: f64,
    /// Added to the variance before the square root. Default `1e-5`.
    pub epsilon: f64,
    /// Learn a per-feature `gamma` and `beta`. Default `true`.
    pub affine: bool,
    /// Initial value of `gamma`. Default `1.0`.
    pub gamma_init: f64,
    /// After the affine. Default layer scaling, the paper's.
    pub error_compensation: ErrorCompensation,
}

impl Default for OnlineNormConfig {
    fn default() -> Self {
        Self {
            alpha_forward: 0.999,
            alpha_backward: 0.99,
            epsilon: 1e-5,
            affine: true,
            gamma_init: 1.0,
            error_compensation: ErrorCompensation::default(),
        }
    }
}

builder!(OnlineNormConfig {
    with_alpha_forward => alpha_forward: f64,
    with_alpha_backward => alpha_backward: f64,
    with_epsilon => epsilon: f64,
    with_affine => affine: bool,
    with_gamma_init => gamma_init: f64,
    with_error_compensation => error_compensation: ErrorCompensation,
});

impl CheckOptions for OnlineNormConfig {
    fn check_options(&self, _num_features: usize) -> Result<(), NormError> {
        check_common(self.epsilon, self.gamma_init, None)?;
        for (field, alpha) in [
            ("alpha_forward", self.alpha_forward),
            ("alpha_backward", self.alpha_backward),
        ] {
            if !(0.0..=1.0).contains(&alpha) {
                return Err(invalid(field, alpha, "a number in [0, 1]"));
            }
        }
        Ok(())
    }
}

impl OnlineNormConfig {
    /// Builds the layer for `num_features` channels, in training mode.
    pub fn init(&self, num_features: usize, device: &Device) -> Result<OnlineNorm, NormError> {
        self.check(num_features)?;
        let zeros = vec![0.0; num_features];
        let state = StreamState {
            mean: zeros.clone(),
            var: vec![1.0; num_features],
            u: zeros.clone(),
            v: zeros,
        };
        Ok(OnlineNorm {
            parts: common_parts!(self, num_features, device),
            // The stream's mean and variance, kept where records save them; the factor is unused.
            running: RunningStats::new(
                1,
                num_features,
                Momentum::Exponential(1.0),
                RunningVariance::Biased,
                device,
            ),
            stream: Arc::new(Mutex::new(state)),
            training: Param::from_bool(true),
            alpha_forward: self.alpha_forward,
            alpha_backward: self.alpha_backward,
            compensation: self.error_compensation,
        })
    }
}

/// Online Normalization (Chiley et al. 2019): every sample is normalized with running
/// statistics of the samples before it, so it trains at batch size 1 and inside recurrences,
/// and computes the same in training and eval up to those statistics.
///
/// Per channel, sample by sample in batch order (and from batch to batch): `y_t = (x_t - mu) /
/// sqrt(var + eps)` with the statistics *before* sample `t`, which then folds in with decay
/// `alpha_forward` (`d = mean(x_t) - mu`, `var = a var + (1 - a) var(x_t) + a (1 - a) d^2`,
/// `mu += (1 - a) d`; a sample's mean and variance are over its positions, a dense feature's
/// are the value and 0). The gradient is the paper's control process, not the derivative of
/// the forward: per sample, the running projections of the gradient on `y` and on the constant
/// (decay `alpha_backward`) are subtracted, which keeps the outputs' mean and variance fixed in
/// expectation. Then the affine and the error compensation (layer scaling by default).
///
/// Eval normalizes with the running statistics and updates nothing. Padded positions and
/// finished sequences are skipped. The training pass runs on the host, on flex and, with the
/// `wgpu` feature, on burn's CubeCL backends (other backends get an error naming the layer); its
/// statistics are saved with the model, the backward's accumulators are not.
#[derive(Module, Debug)]
pub struct OnlineNorm {
    parts: CommonParts,
    running: RunningStats,
    #[module(skip)]
    stream: Arc<Mutex<StreamState>>,
    training: Param<Flag>,
    alpha_forward: f64,
    alpha_backward: f64,
    #[module(skip)]
    compensation: ErrorCompensation,
}

impl OnlineNorm {
    /// The stream with the running statistics the module holds (a loaded model's, say).
    fn stream(&self) -> OnlineStream {
        let read = |t: Tensor<2>| t.into_data().iter::<f64>().collect::<Vec<_>>();
        {
            let mut state = self.stream.lock().unwrap_or_else(|e| e.into_inner());
            state.mean = read(self.running.mean());
            state.var = read(self.running.var());
        }
        OnlineStream {
            state: self.stream.clone(),
            alpha_forward: self.alpha_forward,
            alpha_backward: self.alpha_backward,
            epsilon: self.parts.epsilon,
        }
    }

    /// Writes the stream's statistics back into the module's running statistics.
    fn store(&self, device: &Device) {
        let (mean, var) = {
            let state = self.stream.lock().unwrap_or_else(|e| e.into_inner());
            (state.mean.clone(), state.var.clone())
        };
        let c = mean.len();
        let tensor = |values: Vec<f64>| {
            Tensor::<1>::from_data(burn::tensor::TensorData::new(values, [c]), device)
                .reshape([1, c])
        };
        self.running.set(tensor(mean), tensor(var));
    }

    fn compensate(&self, y: Tensor<3>, weights: Option<Tensor<3>>) -> Tensor<3> {
        match self.compensation {
            ErrorCompensation::LayerScaling => {
                let rms = GroupSpec {
                    groups: 1,
                    center: false,
                    epsilon: 1e-5,
                };
                group_norm(y, weights, rms, None, self.parts.kernels).0
            }
            ErrorCompensation::Clamp => y.clamp(-5.0, 5.0),
            ErrorCompensation::None => y,
        }
    }
}

impl Family for OnlineNorm {
    fn describe(&self) -> String {
        format!("OnlineNorm({} features)", self.parts.num_features)
    }

    family_fields!(parts);

    fn running_stats(&self) -> Option<&RunningStats> {
        Some(&self.running)
    }

    /// `x: [N, C, S] -> [N, C, S]`, statistics per channel streamed over the samples.
    fn normalize(&self, x: Tensor<3>, weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError> {
        let [n, c, s] = x.dims();
        let device = x.device();
        let y = if is_training(&x, self.training.is_enabled()) {
            if !online_supported(&x) {
                return Err(NormError::Unsupported {
                    layer: self.describe(),
                    what: "training on this backend (online normalization trains on flex, and on wgpu \
                           with normlab-norm's `wgpu` feature)",
                });
            }
            let sample_weights = match &weights {
                Some(w) => w.clone().slice(s![.., 0..1, ..]).expand([n, 1, s]),
                None => Tensor::ones([n, 1, s], &device),
            };
            let y = online_normalize(x, sample_weights, &self.stream());
            self.store(&device);
            y
        } else {
            let (mean, var) = self.running.read(0, 1, &device);
            let (ones, zeros) = (Tensor::ones([c], &device), Tensor::zeros([c], &device));
            normalize_with(
                x,
                mean,
                var,
                ones,
                zeros,
                self.parts.epsilon,
                self.parts.kernels,
            )
        };
        let y = apply_affine(self.parts.affine.as_ref(), y);
        Ok(self.compensate(y, weights))
    }
}
