//! Helpers shared by the norm crate's integration tests, beside normlab-testkit's.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

use burn::prelude::*;
use burn::tensor::TensorData;

pub use normlab_testkit::{
    assert_close, device, mask as prefix_mask, normal, relative_difference, to_vec as values,
    train_device,
};

/// A tensor of `shape` holding `values`.
pub fn tensor<const D: usize>(values: &[f32], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}
