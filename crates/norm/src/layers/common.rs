//! What every norm layer holds: its width, epsilon, affine parameters and kernel choice.

use burn::prelude::*;

use crate::kernel::{GroupSpec, GroupStats, group_norm};
use crate::{Affine, Kernels};

/// What every normalizing layer holds: its feature count, the `epsilon` under its square root,
/// its optional `gamma` and `beta`, and which computation it runs.
#[derive(Module, Debug)]
pub struct CommonParts {
    pub(crate) affine: Option<Affine>,
    pub(crate) num_features: usize,
    pub(crate) epsilon: f64,
    #[module(skip)]
    pub(crate) kernels: Kernels,
}

impl CommonParts {
    /// The parts of a layer of `num_features`, with `gamma` starting at `gamma_init` when
    /// `affine`.
    pub(crate) fn new(
        num_features: usize,
        epsilon: f64,
        affine: bool,
        gamma_init: f64,
        device: &Device,
    ) -> Self {
        Self {
            affine: affine.then(|| Affine::init(num_features, gamma_init, device)),
            num_features,
            epsilon,
            kernels: Kernels::default(),
        }
    }

    /// [`group_norm`] of `x: [N, C, S]` with this layer's epsilon, affine and kernels: `groups`
    /// per sample, centred or not.
    pub(crate) fn group_norm(
        &self,
        x: Tensor<3>,
        weights: Option<Tensor<3>>,
        groups: usize,
        center: bool,
    ) -> (Tensor<3>, GroupStats) {
        let spec = GroupSpec {
            groups,
            center,
            epsilon: self.epsilon,
        };
        group_norm(x, weights, spec, self.affine.as_ref(), self.kernels)
    }
}

/// The [`CommonParts`] of `num_features` from a config's `epsilon`, `affine` and `gamma_init`,
/// which every family's config has.
macro_rules! common_parts {
    ($config:expr, $num_features:expr, $device:expr) => {{
        let config = $config;
        $crate::layers::CommonParts::new(
            $num_features,
            config.epsilon,
            config.affine,
            config.gamma_init,
            $device,
        )
    }};
}
pub(crate) use common_parts;

/// `(CommonParts, Option<RunningStats>)` from a config with the fields batch and instance norm
/// share (`epsilon`, `affine`, `gamma_init`, `track_running_stats`, `momentum`,
/// `running_variance`), with `slots` of running statistics when it tracks them.
macro_rules! parts_and_running {
    ($config:expr, $slots:expr, $num_features:expr, $device:expr) => {{
        let config = $config;
        let parts = $crate::layers::common_parts!(config, $num_features, $device);
        let running = config.track_running_stats.then(|| {
            let (momentum, variance) = (config.momentum, config.running_variance);
            $crate::RunningStats::new($slots, $num_features, momentum, variance, $device)
        });
        (parts, running)
    }};
}
pub(crate) use parts_and_running;
