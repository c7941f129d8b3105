//! Min-Max and Z-score input scaling, fitted on the training split only.

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// How inputs are scaled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleKind {
    /// Leave values as they are.
    #[default]
    None,
    /// Map the training range `[min, max]` to `[0, 1]`; other data may land outside.
    MinMax,
    /// Subtract the training mean and divide by the training (population) standard deviation.
    ZScore,
}

/// Over which values the statistics are taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleScope {
    /// Each column (pixel position, sequence feature) gets its own statistics.
    #[default]
    PerFeature,
    /// One set of statistics over all values.
    Global,
}

/// Input scaling as written in a run's configuration, e.g.
/// `{"kind": "z_score", "scope": "per_feature"}`.
/// `scope` defaults to per feature; the whole config defaults to no scaling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalerConfig {
    /// Which scaling.
    pub kind: ScaleKind,
    /// Statistics per feature or over all values.
    #[serde(default)]
    pub scope: ScaleScope,
}

/// A fitted scaler: `x' = (x - shift[j]) / divisor[j]` for column `j` of rows `width` wide.
///
/// Fit it on training data only, save it with the run (it serializes), and apply the same
/// numbers to validation and test data. A column with a single value has divisor 1, so it maps
/// to 0 instead of dividing by zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Fitted")]
pub struct Scaler {
    config: ScalerConfig,
    width: usize,
    /// Per column; with [`ScaleScope::Global`] all columns hold the same number.
    shift: Vec<f32>,
    divisor: Vec<f32>,
}

/// What a saved scaler deserializes into before it is checked, so that a hand-edited or
/// truncated file cannot produce a scaler that divides by zero or indexes out of range.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fitted {
    config: ScalerConfig,
    width: usize,
    shift: Vec<f32>,
    divisor: Vec<f32>,
}

impl TryFrom<Fitted> for Scaler {
    type Error = DataError;

    fn try_from(f: Fitted) -> Result<Self> {
        if f.width == 0 || f.shift.len() != f.width || f.divisor.len() != f.width {
            return Err(DataError::invalid(
                "saved scaler",
                format!(
                    "width {} with {} shifts and {} divisors",
                    f.width,
                    f.shift.len(),
                    f.divisor.len()
                ),
            ));
        }
        if !f.shift.iter().all(|s| s.is_finite())
            || !f.divisor.iter().all(|&d| d.is_finite() && d > 0.0)
        {
            return Err(DataError::invalid(
                "saved scaler",
                "shifts must be finite and divisors finite and positive",
            ));
        }
        Ok(Self {
            config: f.config,
            width: f.width,
            shift: f.shift,
            divisor: f.divisor,
        })
    }
}

/// Statistics of one group of values, accumulated in f64 so that millions of pixels do not
/// lose precision.
#[derive(Clone, Copy)]
struct Stats {
    count: usize,
    min: f64,
    max: f64,
    sum: f64,
    squared_deviations: f64,
}

impl Stats {
    const EMPTY: Self = Self {
        count: 0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        sum: 0.0,
        squared_deviations: 0.0,
    };

    fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }

    /// `(shift, divisor)` for this group.
    fn params(&self, kind: ScaleKind) -> (f32, f32) {
        // Exact comparison on purpose: only a truly constant column has no spread, and
        // a roundoff-sized standard deviation would blow its values up.
        let constant = self.min == self.max;
        let (shift, divisor) = match kind {
            ScaleKind::None => (0.0, 1.0),
            ScaleKind::MinMax => (self.min, self.max - self.min),
            ScaleKind::ZScore => (
                self.mean(),
                (self.squared_deviations / self.count as f64).sqrt(),
            ),
        };
        (shift as f32, if constant { 1.0 } else { divisor as f32 })
    }
}

impl Scaler {
    /// Fit on training rows: `rows` holds `rows.len() / width` rows of `width` columns (pixels
    /// of an image, features of a sequence step).
    ///
    /// Errors if `width` is 0, `rows` is empty or not a whole number of rows, or holds a
    /// non-finite value.
    pub fn fit(config: ScalerConfig, rows: &[f32], width: usize) -> Result<Self> {
        check_shape("training rows", rows, width)?;
        if rows.is_empty() {
            return Err(DataError::invalid("training rows", "no values to fit on"));
        }
        if let Some(i) = rows.iter().position(|x| !x.is_finite()) {
            return Err(DataError::invalid(
                "training rows",
                format!("value {i} is {}, not a finite number", rows[i]),
            ));
        }

        let groups = match config.scope {
            ScaleScope::PerFeature => width,
            ScaleScope::Global => 1,
        };
        let group_of = |i: usize| (i % width) % groups;
        let mut stats = vec![Stats::EMPTY; groups];
        for (i, &x) in rows.iter().enumerate() {
            let s = &mut stats[group_of(i)];
            let x = f64::from(x);
            s.count += 1;
            s.min = s.min.min(x);
            s.max = s.max.max(x);
            s.sum += x;
        }
        // A second pass around the mean: summing squares directly would cancel badly for
        // data far from zero.
        let means: Vec<f64> = stats.iter().map(Stats::mean).collect();
        for (i, &x) in rows.iter().enumerate() {
            let g = group_of(i);
            stats[g].squared_deviations += (f64::from(x) - means[g]).powi(2);
        }

        let (shift, divisor) = (0..width)
            .map(|j| stats[group_of(j)].params(config.kind))
            .unzip();
        Ok(Self {
            config,
            width,
            shift,
            divisor,
        })
    }

    /// The config it was fitted with.
    pub fn config(&self) -> ScalerConfig {
        self.config
    }

    /// Columns per row, as fitted.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Scale `data` in place: rows of [`Scaler::width`] columns. Errors if `data.len()` is not a
    /// multiple of the width.
    pub fn transform(&self, data: &mut [f32]) -> Result<()> {
        self.apply(data, |x, shift, divisor| (x - shift) / divisor)
    }

    /// Undo [`Scaler::transform`] in place (up to f32 rounding).
    pub fn inverse_transform(&self, data: &mut [f32]) -> Result<()> {
        self.apply(data, |x, shift, divisor| x * divisor + shift)
    }

    fn apply(&self, data: &mut [f32], f: impl Fn(f32, f32, f32) -> f32) -> Result<()> {
        check_shape("data to scale", data, self.width)?;
        if self.config.kind == ScaleKind::None {
            return Ok(());
        }
        for row in data.chunks_exact_mut(self.width) {
            for ((x, &shift), &divisor) in row.iter_mut().zip(&self.shift).zip(&self.divisor) {
                *x = f(*x, shift, divisor);
            }
        }
        Ok(())
    }
}

fn check_shape(what: &'static str, data: &[f32], width: usize) -> Result<()> {
    if width == 0 {
        return Err(DataError::invalid(what, "row width is 0"));
    }
    if !data.len().is_multiple_of(width) {
        return Err(DataError::invalid(
            what,
            format!("{} values are not whole rows of {width}", data.len()),
        ));
    }
    Ok(())
}
