//! Helpers shared by the norm crate's integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use burn::prelude::*;
use burn::tensor::TensorData;

/// The plain CPU device the tests compute on.
pub fn device() -> Device {
    Device::flex()
}

/// The same device with autodiff, where layers train.
pub fn train_device() -> Device {
    Device::flex().autodiff()
}

pub fn tensor<const D: usize>(values: &[f32], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// Largest `|a - b| / (1 + |b|)` over two equally long slices.
pub fn max_rel_error(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "length differs");
    actual
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0, f32::max)
}

#[track_caller]
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], tolerance: f32) {
    let err = max_rel_error(actual, expected);
    assert!(
        err <= tolerance,
        "{what}: max relative error {err:e} > {tolerance:e}\n actual   {actual:?}\n expected {expected:?}"
    );
}

/// A padding mask `[N, T]` with the first `lengths[n]` steps of row `n` real.
pub fn prefix_mask(lengths: &[usize], steps: usize, device: &Device) -> Tensor<2, Bool> {
    let flags: Vec<bool> = lengths
        .iter()
        .flat_map(|&len| (0..steps).map(move |t| t < len))
        .collect();
    Tensor::from_data(TensorData::new(flags, [lengths.len(), steps]), device)
}
