//! The experiment runner behind the `normlab` binary: reads an experiment file, trains its grid,
//! and leaves metrics, plots and a report in `results/<name>/`.
//!
//! [`config`] reads an experiment file into a grid of runs; [`sweep`] trains what is left of the
//! grid, one run by [`train`] (the training loop) scored by [`evaluate`], and writes the
//! [`results`]; [`plot`] and [`report`] read those records through [`analysis`]. [`check`] does
//! what a sweep does before training, and estimates its time; [`compare`] puts the runs of
//! several results folders into the same plots; [`shard`] splits a grid over processes and
//! [`merge`] joins their results; [`verify`] retrains part of a results folder and says whether
//! its numbers and its verdict hold on this machine.
#![warn(missing_docs)]

pub mod analysis;
pub mod axes;
pub mod check;
pub mod compare;
pub mod config;
mod error;
pub mod evaluate;
#[cfg(test)]
mod fixtures;
pub mod machine;
pub mod merge;
pub mod model_init;
pub mod plot;
mod progress;
pub mod readme;
pub mod report;
pub mod result_set;
pub mod results;
pub mod shard;
pub mod sweep;
pub mod task;
pub mod tasks;
pub mod train;
pub mod verify;

pub use error::RunnerError;
