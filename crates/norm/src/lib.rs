//! Normalization layers for [burn](https://burn.dev): batch, layer, instance, group and RMS norm
//! behind one serde-configurable choice, [`NormConfig`].
//!
//! Every layer implements [`NormLayer`] and accepts dense `[N, F]`, channels-first conv
//! `[N, C, ...]` and batch-first sequence `[N, T, F]` input (with an optional padding mask);
//! the numbers match PyTorch's layers of the same name, and the places where they deliberately
//! differ are written on each layer.
//!
//! ```
//! use burn::prelude::*;
//! use normlab_norm::{NormConfig, NormLayer};
//!
//! let device = Device::flex().autodiff();
//! let config: NormConfig = serde_json::from_str(r#"{"kind": "group", "groups": 4}"#).unwrap();
//! let norm = config.init(16, &device).unwrap();
//! let x = Tensor::<4>::random([2, 16, 8, 8], burn::tensor::Distribution::Default, &device);
//! let y = norm.forward(x).unwrap();
//! assert_eq!(y.dims(), [2, 16, 8, 8]);
//! ```

mod affine;
mod batch;
mod config;
mod error;
mod group;
mod instance;
mod layer;
mod norm;
mod norm_layer;
mod rms;
mod running;
mod stats;

pub use affine::Affine;
pub use batch::{BatchNorm, BatchNormConfig};
pub use config::{Momentum, NormConfig, RunningVariance};
pub use error::NormError;
pub use group::{GroupNorm, GroupNormConfig};
pub use instance::{InstanceNorm, InstanceNormConfig};
pub use layer::{LayerNorm, LayerNormConfig};
pub use norm::{NoNorm, Norm};
pub use norm_layer::NormLayer;
pub use rms::{RmsNorm, RmsNormConfig};
pub use running::RunningStats;
