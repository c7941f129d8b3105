//! One file per family: its config (with documented defaults and the checks of its options)
//! and its layer.

mod batch;
mod batch_renorm;
mod common;
mod evonorm_b0;
mod evonorm_s0;
mod frn;
mod frozen;
mod group;
mod instance;
mod layer;
mod none;
mod online;
mod rms;

pub use batch::{BatchNorm, BatchNormConfig};
pub use batch_renorm::{BatchRenorm, BatchRenormConfig};
pub(crate) use common::CommonParts;
pub use evonorm_b0::{EvoNormB0, EvoNormB0Config};
pub use evonorm_s0::{EvoNormS0, EvoNormS0Config};
pub use frn::{FilterResponseNorm, FrnConfig};
pub use frozen::FrozenBatchNorm;
pub use group::{GroupNorm, GroupNormConfig};
pub use instance::{InstanceNorm, InstanceNormConfig};
pub use layer::{Centered, Centering, LayerNorm, LayerNormConfig, SampleNormConfig, Uncentered};
pub use none::NoNorm;
pub use online::{ErrorCompensation, OnlineNorm, OnlineNormConfig};
pub use rms::{RmsNorm, RmsNormConfig};
