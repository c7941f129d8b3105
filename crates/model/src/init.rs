//! The weight init every layer of the dense and conv builders starts from.

use burn::nn::Initializer;

/// burn's (and PyTorch's) default weight init, `U(±sqrt(1 / fan_in))`, times `scale`: the knob
/// of the init-sensitivity experiment.
pub(crate) fn scaled_kaiming(scale: f64) -> Initializer {
    Initializer::KaimingUniform {
        gain: scale / 3f64.sqrt(),
        fan_out_only: false,
    }
}
