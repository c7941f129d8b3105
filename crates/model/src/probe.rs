//! Seeing inside: statistics of the activations before and after every norm site, recorded while
//! a closure runs, without any change to the model code.
//!
//! ```ignore
//! let (logits, sites) = probe::capture(3, || model.forward(input));
//! for site in sites? { println!("{}: mean {} -> {}", site.site, site.before.mean, site.after.mean) }
//! ```
//! Every model in this crate passes each norm through [`observe`]; with no capture running that
//! costs nothing. The statistics are detached and copied to the host, so recording slows a step
//! but never changes it.

use std::cell::RefCell;

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

/// What one norm site saw during the captured call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteStats {
    /// The layer, e.g. `hidden 2` or `conv 1`.
    pub site: String,
    /// The norm's input.
    pub before: Summary,
    /// The norm's output.
    pub after: Summary,
}

struct Recorder {
    units: usize,
    sites: Vec<SiteStats>,
}

thread_local! {
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Runs `f` and returns its result with the statistics of every norm site it passed, tracking
/// percentiles of the first `units` units of each. Captures do not nest: an inner one takes over.
pub fn capture<T>(units: usize, f: impl FnOnce() -> T) -> (T, Vec<SiteStats>) {
    let previous = RECORDER.with(|r| {
        r.borrow_mut().replace(Recorder {
            units,
            sites: Vec::new(),
        })
    });
    let out = f();
    let recorder = RECORDER.with(|r| std::mem::replace(&mut *r.borrow_mut(), previous));
    (out, recorder.map(|r| r.sites).unwrap_or_default())
}

/// Applies `norm` to `x` at the site `site`, recording both sides when a capture is running.
/// `unit_axis` is the axis whose entries are the units (features or channels).
pub(crate) fn observe<const D: usize, E>(
    site: impl FnOnce() -> String,
    unit_axis: usize,
    x: Tensor<D>,
    norm: impl FnOnce(Tensor<D>) -> Result<Tensor<D>, E>,
) -> Result<Tensor<D>, E> {
    let units = RECORDER.with(|r| r.borrow().as_ref().map(|r| r.units));
    let Some(units) = units else {
        return norm(x);
    };
    let before = summarize(&x, unit_axis, units);
    let y = norm(x)?;
    let after = summarize(&y, unit_axis, units);
    let stats = SiteStats {
        site: site(),
        before,
        after,
    };
    RECORDER.with(|r| {
        if let Some(recorder) = r.borrow_mut().as_mut() {
            recorder.sites.push(stats);
        }
    });
    Ok(y)
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
