//! Helpers shared by the norm crate's integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use burn::prelude::*;
use burn::tensor::TensorData;

/// The device the tests compute on: flex (burn's CPU backend, with the fused kernels), or the
/// wgpu backend's default adapter when `NORMLAB_TEST_DEVICE=wgpu` and the crate's `wgpu` feature
/// is on (CI runs the reference tests there on Mesa's software Vulkan driver, lavapipe).
pub fn device() -> Device {
    match std::env::var("NORMLAB_TEST_DEVICE").as_deref() {
        Err(_) | Ok("" | "flex") => Device::flex(),
        #[cfg(feature = "wgpu")]
        Ok("wgpu") => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        Ok(other) => {
            panic!("NORMLAB_TEST_DEVICE={other}: expected flex, or wgpu with `--features wgpu`")
        }
    }
}

/// The same device with autodiff, where layers train.
pub fn train_device() -> Device {
    device().autodiff()
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
    if err > tolerance {
        let worst = (0..actual.len())
            .max_by(|&i, &j| {
                let e = |k: usize| (actual[k] - expected[k]).abs() / (1.0 + expected[k].abs());
                e(i).total_cmp(&e(j))
            })
            .unwrap();
        panic!(
            "{what}: max relative error {err:e} > {tolerance:e} at index {worst} of {}: \
             got {}, expected {}",
            actual.len(),
            actual[worst],
            expected[worst]
        );
    }
}

/// Normal random values from a fixed seed: burn's own RNG is process-global, and the test
/// harness runs tests on several threads at once.
pub fn normal<const D: usize>(
    shape: [usize; D],
    mean: f32,
    std: f32,
    seed: u64,
    device: &Device,
) -> Tensor<D> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let count = shape.iter().product();
    let data: Vec<f32> = (0..count)
        .map(|_| {
            // Box-Muller: two uniforms to one standard normal.
            let (u, v): (f32, f32) = (rng.random_range(f32::EPSILON..1.0), rng.random());
            mean + std * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        })
        .collect();
    tensor(&data, shape, device)
}

/// A padding mask `[N, T]` with the first `lengths[n]` steps of row `n` real.
pub fn prefix_mask(lengths: &[usize], steps: usize, device: &Device) -> Tensor<2, Bool> {
    let flags: Vec<bool> = lengths
        .iter()
        .flat_map(|&len| (0..steps).map(move |t| t < len))
        .collect();
    Tensor::from_data(TensorData::new(flags, [lengths.len(), steps]), device)
}
