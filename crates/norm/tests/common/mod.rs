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

/// Every parameter gradient of `norm` in `grads`, in visiting order.
pub fn parameter_gradients(norm: &normlab_norm::Norm, grads: burn::tensor::Gradients) -> Vec<f32> {
    struct Collect<'a>(&'a burn::optim::GradientsParams, Vec<f32>);
    impl burn::module::ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if let Some(grad) = self.0.get::<D>(param.id) {
                self.1.extend(values(grad));
            }
        }
    }
    let params = burn::optim::GradientsParams::from_grads(grads, norm);
    let mut collect = Collect(&params, Vec::new());
    norm.visit(&mut collect);
    collect.1
}
