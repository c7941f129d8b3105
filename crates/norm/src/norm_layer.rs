use burn::prelude::*;

use crate::NormError;

/// What every norm layer offers: one trait, so a model can hold any of them.
///
/// Implementors provide the computation on a canonical channels-first view; the shape checks,
/// the layouts and the padding mask are handled here once for all families.
///
/// # Layouts
/// - [`forward`](NormLayer::forward): channels-first `[N, C]`, `[N, C, L]`, `[N, C, H, W]`,
///   `[N, C, D, H, W]` (any rank >= 2), with `C` = `num_features`.
/// - [`forward_sequence`](NormLayer::forward_sequence): batch-first sequences `[N, T, F]` with an
///   optional padding mask `[N, T]` (true = a real step).
/// - [`forward_step`](NormLayer::forward_step): one time step `[N, F]` inside a recurrence.
///
/// # Train and eval
/// A layer with running statistics (batch norm; instance norm with `track_running_stats`) uses
/// batch statistics and updates its running ones only when the input lives on an autodiff device
/// **and** the layer is in training mode, the same rule as burn-nn. `model.valid()` gives the
/// eval copy (plain device, running statistics); `model.train()` switches back.
pub trait NormLayer {
    /// A short description naming the layer and its size, used in error messages.
    fn describe(&self) -> String;

    /// The number of features (channels) the layer was built for.
    fn num_features(&self) -> usize;

    /// Normalizes a channels-first `x: [N, C, S]`. `weights: [N, 1 or C, S]` is 1 for real
    /// elements and 0 for padding, which must not enter any statistic. The output at padding is
    /// zeroed by the caller.
    fn normalize(&self, x: Tensor<3>, weights: Option<Tensor<3>>) -> Result<Tensor<3>, NormError>;

    /// Normalizes a sequence `x: [N, T, F]` with `weights: [N, T, 1]`.
    ///
    /// The default treats time like a spatial axis, which is right for batch norm with shared
    /// statistics, instance and group norm; per-step families override it.
    fn normalize_sequence(
        &self,
        x: Tensor<3>,
        weights: Option<Tensor<3>>,
    ) -> Result<Tensor<3>, NormError> {
        let weights = weights.map(|w| w.swap_dims(1, 2));
        Ok(self.normalize(x.swap_dims(1, 2), weights)?.swap_dims(1, 2))
    }

    /// Normalizes time step `step` of a recurrence, `x: [N, F]`, `weights: [N, 1]`.
    ///
    /// The default sees the step as a sequence of length one; per-step batch norm overrides it to
    /// pick the statistics of `step`.
    fn normalize_step(
        &self,
        x: Tensor<2>,
        step: usize,
        weights: Option<Tensor<2>>,
    ) -> Result<Tensor<2>, NormError> {
        let _ = step;
        let out =
            self.normalize_sequence(x.unsqueeze_dim(1), weights.map(|w| w.unsqueeze_dim(1)))?;
        Ok(out.squeeze_dim(1))
    }

    /// Normalizes channels-first input `[N, C, ...]`; the output has the input's shape.
    fn forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>, NormError>
    where
        Self: Sized,
    {
        let dims = x.dims();
        if D < 2 || dims[1] != self.num_features() {
            return Err(NormError::ShapeMismatch {
                layer: self.describe(),
                expected: format!("[N, {}, ...]", self.num_features()),
                got: dims.to_vec(),
            });
        }
        let spatial: usize = dims[2..].iter().product();
        let out = self.normalize(x.reshape([dims[0], dims[1], spatial]), None)?;
        Ok(out.reshape(dims))
    }

    /// Normalizes a batch-first sequence `x: [N, T, F]`; `mask: [N, T]` marks the real steps.
    ///
    /// Padded steps enter no statistic and come out as zeros.
    fn forward_sequence(
        &self,
        x: Tensor<3>,
        mask: Option<Tensor<2, Bool>>,
    ) -> Result<Tensor<3>, NormError> {
        let dims = x.dims();
        if dims[2] != self.num_features() {
            return Err(NormError::ShapeMismatch {
                layer: self.describe(),
                expected: format!("[N, T, {}]", self.num_features()),
                got: dims.to_vec(),
            });
        }
        let Some(mask) = mask else {
            return self.normalize_sequence(x, None);
        };
        if mask.dims() != [dims[0], dims[1]] {
            return Err(NormError::MaskMismatch {
                layer: self.describe(),
                input: dims.to_vec(),
                mask: mask.dims().to_vec(),
            });
        }
        let weights = mask.float().unsqueeze_dim::<3>(2);
        Ok(self.normalize_sequence(x, Some(weights.clone()))? * weights)
    }

    /// Normalizes time step `step` of a recurrence, `x: [N, F]`; `mask: [N]` marks the
    /// sequences still running at that step. Finished sequences enter no statistic and come out
    /// as zeros.
    fn forward_step(
        &self,
        x: Tensor<2>,
        step: usize,
        mask: Option<Tensor<1, Bool>>,
    ) -> Result<Tensor<2>, NormError> {
        let dims = x.dims();
        if dims[1] != self.num_features() {
            return Err(NormError::ShapeMismatch {
                layer: self.describe(),
                expected: format!("[N, {}]", self.num_features()),
                got: dims.to_vec(),
            });
        }
        let Some(mask) = mask else {
            return self.normalize_step(x, step, None);
        };
        if mask.dims() != [dims[0]] {
            return Err(NormError::MaskMismatch {
                layer: self.describe(),
                input: dims.to_vec(),
                mask: mask.dims().to_vec(),
            });
        }
        let weights = mask.float().unsqueeze_dim::<2>(1);
        Ok(self.normalize_step(x, step, Some(weights.clone()))? * weights)
    }
}

/// True when a layer should use batch statistics and update running ones: the input can be
/// differentiated and the layer's training flag is on (burn-nn's rule).
pub(crate) fn is_training(x: &Tensor<3>, flag: bool) -> bool {
    flag && x.device().is_autodiff()
}

/// `normalize_sequence` for families whose statistics belong to one (sample, step): each step of
/// `x: [N, T, F]` is seen as a sample with `F` channels. Padding needs no care here, since no
/// statistic crosses steps and the caller zeroes padded outputs.
pub(crate) fn normalize_each_step<L: NormLayer + ?Sized>(
    layer: &L,
    x: Tensor<3>,
) -> Result<Tensor<3>, NormError> {
    let [n, t, f] = x.dims();
    let out = layer.normalize(x.reshape([n * t, f, 1]), None)?;
    Ok(out.reshape([n, t, f]))
}
