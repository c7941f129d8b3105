//! Labelled images, channels first, unscaled.

/// Labelled images with raw pixel values (0..16 for digits, 0..255 for MNIST), not scaled:
/// scaling is [`crate::Scaler`]'s job, fitted on the training part only.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    /// `len() * C * H * W` values, example-major, each example `[C, H, W]` row-major.
    pub pixels: Vec<f32>,
    /// Class of each example, `0..classes`.
    pub labels: Vec<usize>,
    /// `[C, H, W]` of one example.
    pub shape: [usize; 3],
    /// Number of classes.
    pub classes: usize,
}

impl Images {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per example, `C * H * W`.
    pub fn example_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Pixels of example `i`, `[C, H, W]` row-major. Panics if `i >= len()`.
    pub fn example(&self, i: usize) -> &[f32] {
        let n = self.example_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Pixels of the examples `indices` in that order, `indices.len() * C * H * W` values:
    /// a batch, or the rows to fit a scaler on. Panics if an index is out of range.
    pub fn gather(&self, indices: &[usize]) -> Vec<f32> {
        indices
            .iter()
            .flat_map(|&i| self.example(i).iter().copied())
            .collect()
    }
}
