//! RMS normalization (Zhang & Sennrich 2019).

use crate::{LayerNorm, SampleNormConfig, Uncentered};

/// Configuration of [`RmsNorm`]: per-sample statistics, not centred. Its `epsilon` defaults to
/// `f32::EPSILON`, PyTorch's default for f32.
pub type RmsNormConfig = SampleNormConfig<Uncentered>;

/// Root-mean-square normalization (Zhang & Sennrich, 2019): layer norm without subtracting the
/// mean, `x / sqrt(mean(x²) + eps)`, over the same axes as [`LayerNorm`], and
/// computed by the same layer.
///
/// Matches PyTorch's `RMSNorm` over the same shape. **Deliberate difference:** with `affine` the
/// layer also learns a `beta` (initialised to 0, so it starts identical); PyTorch's has only the
/// weight. Like [`LayerNorm`], its affine is per channel on conv input.
pub type RmsNorm = LayerNorm;
