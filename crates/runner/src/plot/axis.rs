//! Axes: where values go on a panel, and where the ticks are.

use std::ops::Range;

use crate::analysis::fmt_number;

/// One axis: its label, its scale and where its ticks are.
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    pub(crate) label: String,
    /// Values are drawn at their natural logarithm.
    pub(crate) log: bool,
    /// In drawing coordinates (after the logarithm).
    pub(crate) range: Range<f64>,
    /// Drawing coordinate and text of each tick.
    pub(crate) ticks: Vec<(f64, String)>,
}

impl Axis {
    /// Spans `low..high` with round ticks, on a log scale when `allow_log` and the values span
    /// more than 20x, where a linear axis would flatten the small end.
    pub(crate) fn fit(label: &str, low: f64, high: f64, allow_log: bool) -> Self {
        let log = allow_log && low > 0.0 && high / low > 20.0;
        if log {
            let range = padded(low.ln(), high.ln(), false);
            Self {
                label: format!("{label} (log scale)"),
                log,
                ticks: log_ticks(&range),
                range,
            }
        } else {
            let range = padded(low, high, low >= 0.0);
            Self {
                label: label.to_string(),
                log,
                ticks: linear_ticks(&range),
                range,
            }
        }
    }

    /// A log scale with ticks at exactly `values` (positive): batch sizes, learning rates.
    pub(crate) fn log_at(label: &str, values: &[f64]) -> Self {
        let low = values.iter().copied().fold(f64::INFINITY, f64::min).ln();
        let high = values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
            .ln();
        let margin = if high > low { 0.08 * (high - low) } else { 0.5 };
        Self {
            label: label.to_string(),
            log: true,
            range: low - margin..high + margin,
            ticks: values.iter().map(|v| (v.ln(), fmt_number(*v))).collect(),
        }
    }

    /// One tick per category, at 0, 1, ...
    pub(crate) fn categories(label: &str, names: &[String]) -> Self {
        Self {
            label: label.to_string(),
            log: false,
            range: -0.5..names.len() as f64 - 0.5,
            ticks: names
                .iter()
                .enumerate()
                .map(|(i, name)| (i as f64, name.clone()))
                .collect(),
        }
    }

    /// The drawing coordinate of a data value.
    pub(crate) fn at(&self, value: f64) -> f64 {
        if self.log { value.ln() } else { value }
    }

    /// The text of the tick at drawing coordinate `position`.
    pub(crate) fn tick_text(&self, position: f64) -> String {
        self.ticks
            .iter()
            .min_by(|a, b| (a.0 - position).abs().total_cmp(&(b.0 - position).abs()))
            .map(|(_, text)| text.clone())
            .unwrap_or_default()
    }
}

/// `low..high` widened by 5% on each side (a little more if it is a single value), not below
/// zero if `non_negative`.
fn padded(low: f64, high: f64, non_negative: bool) -> Range<f64> {
    let span = if high > low {
        high - low
    } else {
        low.abs().max(1.0) * 0.2
    };
    let start = low - 0.05 * span;
    let start = if non_negative { start.max(0.0) } else { start };
    start..high + 0.05 * span
}

/// Ticks at round numbers (1, 2 or 5 times a power of ten apart), about six of them.
fn linear_ticks(range: &Range<f64>) -> Vec<(f64, String)> {
    let raw = (range.end - range.start) / 6.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let first = (range.start / step).ceil() as i64;
    let last = (range.end / step).floor() as i64;
    (first..=last)
        .map(|i| {
            let value = i as f64 * step;
            // `+ 0.0` turns -0 into 0.
            (value, format!("{:.decimals$}", value + 0.0))
        })
        .collect()
}

/// Ticks at 1, 2 and 5 times powers of ten inside a log range (drawing coordinates); every
/// integer multiple where that leaves fewer than two, powers of ten only where it gives many.
fn log_ticks(range: &Range<f64>) -> Vec<(f64, String)> {
    let (low, high) = (range.start.exp(), range.end.exp());
    let decades = low.log10().floor() as i32..=high.log10().ceil() as i32;
    let with = |multipliers: &[f64]| -> Vec<f64> {
        decades
            .clone()
            .flat_map(|d| multipliers.iter().map(move |m| m * 10f64.powi(d)))
            .filter(|v| (low..=high).contains(v))
            .collect()
    };
    let mut values = with(&[1.0, 2.0, 5.0]);
    if values.len() > 10 {
        values = with(&[1.0]);
    } else if values.len() < 2 {
        values = with(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    }
    values
        .into_iter()
        .map(|v| (v.ln(), fmt_number(v)))
        .collect()
}
