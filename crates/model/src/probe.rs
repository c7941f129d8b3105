//! Seeing inside: statistics of the activations before and after every norm site of a forward
//! pass run with [`Instruments::probing`](crate::Instruments::probing).
//!
//! ```ignore
//! let mut instruments = Instruments::none().probing(3);
//! let logits = model.forward_instrumented(input, &mut instruments)?;
//! for site in instruments.take_probe() { println!("{}: mean {} -> {}", site.site, site.before.mean, site.after.mean) }
//! ```
//! The statistics are detached and copied to the host, so recording slows a step but never
//! changes it.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// A summary of one activation tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Over every element.
    pub mean: f32,
    /// Over every element (population).
    pub std: f32,
    /// For each tracked unit (feature or channel `0, 1, ...`): its 15th, 50th and 85th
    /// percentiles over the batch (and positions or steps), as in the BN paper's Figure 1.
    pub percentiles: Vec<[f32; 3]>,
}

/// What one norm site saw during the probed forward pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteStats {
    /// The layer, e.g. `hidden 2` or `conv 1`.
    pub site: String,
    /// The norm's input.
    pub before: Summary,
    /// The norm's output.
    pub after: Summary,
}

/// The sites recorded so far, tracking the percentiles of the first `units` units of each.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorder {
    pub units: usize,
    pub sites: Vec<SiteStats>,
}

impl Recorder {
    /// The percentiles of a norm's input or output `x` whose axis `unit_axis` holds the units
    /// (features or channels).
    pub fn summarize<const D: usize>(&self, x: &Tensor<D>, unit_axis: usize) -> Summary {
        summarize(x, unit_axis, self.units)
    }

    /// Records the norm at `site`: its input's summary `before`, its output `y`.
    pub fn record<const D: usize>(
        &mut self,
        site: String,
        before: Summary,
        y: &Tensor<D>,
        unit_axis: usize,
    ) {
        let after = summarize(y, unit_axis, self.units);
        self.sites.push(SiteStats {
            site,
            before,
            after,
        });
    }
}

fn summarize<const D: usize>(x: &Tensor<D>, unit_axis: usize, units: usize) -> Summary {
    let dims = x.dims();
    let width = dims[unit_axis];
    let columns = x
        .clone()
        .detach()
        .swap_dims(unit_axis, D - 1)
        .reshape([-1, width as i32]);
    let values: Vec<f32> = columns.into_data().iter::<f32>().collect();
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let percentiles = (0..units.min(width))
        .map(|unit| {
            let mut column: Vec<f32> = values.iter().skip(unit).step_by(width).copied().collect();
            column.sort_by(f32::total_cmp);
            [0.15, 0.5, 0.85].map(|q| column[((column.len() - 1) as f64 * q).round() as usize])
        })
        .collect();
    Summary {
        mean: mean as f32,
        std: var.sqrt() as f32,
        percentiles,
    }
}
