//! Labelled variable-length multivariate sequences.

/// Labelled multivariate time series of varying length.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequences {
    /// One entry per case: `steps * features` values, step-major (all features of step 0,
    /// then of step 1, ...), so that features are the last axis.
    pub values: Vec<Vec<f32>>,
    /// Class of each case, an index into `class_names`.
    pub labels: Vec<usize>,
    /// Values per step.
    pub features: usize,
    /// Number of classes, `class_names.len()`.
    pub classes: usize,
    /// Class labels as written in the file, in header order.
    pub class_names: Vec<String>,
}

impl Sequences {
    /// Number of cases.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when there are no cases.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Length of case `i` in steps. Panics if `i >= len()`.
    pub fn steps(&self, i: usize) -> usize {
        self.values[i].len() / self.features
    }

    /// All steps of the cases `indices`, concatenated: `sum(steps) * features` values, one row
    /// of `features` per step. These are the rows to fit a scaler on (training cases only).
    /// Panics if an index is out of range.
    pub fn rows(&self, indices: &[usize]) -> Vec<f32> {
        indices
            .iter()
            .flat_map(|&i| self.values[i].iter().copied())
            .collect()
    }
}
