//! One file per family: its config (with documented defaults and the checks of its options)
//! and its layer.

/// The [`Family`](crate::family::Family) accessors of a layer that keeps its [`CommonParts`] in
/// its field `parts` and, with `running`, the running statistics its batch statistics fold into
/// in its field `running` (an `Option` with `optional running`).
macro_rules! family_fields {
    (parts) => {
        fn parts(&self) -> Option<&CommonParts> {
            Some(&self.parts)
        }

        fn parts_mut(&mut self) -> Option<&mut CommonParts> {
            Some(&mut self.parts)
        }
    };
    (parts, running) => {
        family_fields!(parts);

        fn running_stats(&self) -> Option<&RunningStats> {
            Some(&self.running)
        }

        fn batch_running_stats_mut(&mut self) -> Option<&mut RunningStats> {
            Some(&mut self.running)
        }
    };
    (parts, optional running) => {
        family_fields!(parts);

        fn running_stats(&self) -> Option<&RunningStats> {
            self.running.as_ref()
        }

        fn batch_running_stats_mut(&mut self) -> Option<&mut RunningStats> {
            self.running.as_mut()
        }
    };
}

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
pub(crate) use common::{CommonParts, common_parts, parts_and_running};
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
