//! Normalization layers for [burn](https://burn.dev): batch, layer, instance, group and RMS norm,
//! and the published remedies for batch norm's failures (batch renormalization, ghost batch
//! norm, PreciseBN, frozen and folded batch norm, FRN, EvoNorm, weight standardization, online
//! normalization), behind one serde-configurable choice, [`NormConfig`].
//!
//! Every layer implements [`NormLayer`] and accepts dense `[N, F]`, channels-first conv
//! `[N, C, ...]` and batch-first sequence `[N, T, F]` input (with an optional padding mask);
//! the numbers match PyTorch's layers of the same name, and the places where they deliberately
//! differ are written on each layer. What each family computes, and the numbers the tests hold
//! it to, is the [`contract`].
//!
//! ```
//! use burn::prelude::*;
//! use normlab_norm::NormConfig;
//!
//! let device = Device::flex().autodiff();
//! let config: NormConfig = serde_json::from_str(r#"{"kind": "group", "groups": 4}"#).unwrap();
//! let norm = config.init(16, &device).unwrap();
//! let x = Tensor::<4>::random([2, 16, 8, 8], burn::tensor::Distribution::Default, &device);
//! let y = norm.forward(x).unwrap();
//! assert_eq!(y.dims(), [2, 16, 8, 8]);
//! ```
#![warn(missing_docs)]

mod affine;
mod config;
mod error;
mod family;
mod fold;
mod kernel;
mod layers;
mod norm;
mod norm_layer;
mod options;
mod running;
mod weight_standardization;

#[doc = include_str!("../docs/contract.md")]
pub mod contract {}

pub use affine::Affine;
pub use config::NormConfig;
pub use error::NormError;
pub use fold::{fold_into_conv2d, fold_into_linear};
pub use layers::*;
pub use norm::Norm;
pub use norm_layer::NormLayer;
pub use options::{Kernels, Momentum, RunningVariance};
pub use running::{RunningStats, fold_statistics_after};
pub use weight_standardization::{WEIGHT_STANDARDIZATION_EPSILON, standardize_weights};

/// Runs `$body` with `$t` the Rust float type of the burn `DType` `$dtype` (f32 or f64), for
/// the CPU kernels of this crate and of normlab-model; any other type panics, naming `$what`.
/// Not part of the API.
#[doc(hidden)]
#[macro_export]
macro_rules! on_floats {
    ($dtype:expr, $what:literal, |$t:ident| $body:expr) => {
        match $dtype {
            burn::tensor::DType::F32 => {
                type $t = f32;
                $body
            }
            burn::tensor::DType::F64 => {
                type $t = f64;
                $body
            }
            other => panic!("{} take f32 or f64, got {other:?}", $what),
        }
    };
}
