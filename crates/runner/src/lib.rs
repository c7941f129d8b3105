//! The experiment runner behind the `normlab` binary: reads an experiment file, trains its grid,
//! and leaves metrics, plots and a report in `results/<name>/`.

pub mod config;
pub mod plot;
pub mod report;
pub mod results;
pub mod sweep;
pub mod task;
pub mod train;
