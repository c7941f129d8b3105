//! Activations, where a norm sits relative to them, and the one function that applies both.

use burn::prelude::*;
use burn::tensor::activation;
use normlab_norm::Norm;
use serde::{Deserialize, Serialize};

use crate::Instruments;
use crate::ModelError;

/// The nonlinearity after each hidden layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(x, 0)`.
    #[default]
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// The BN paper's MNIST network used sigmoid units.
    Sigmoid,
}

impl Activation {
    /// The activation of every element of `x`.
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Relu => activation::relu(x),
            Self::Tanh => activation::tanh(x),
            Self::Sigmoid => activation::sigmoid(x),
        }
    }
}

/// Where a hidden layer's norm sits relative to its activation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormPosition {
    /// `act(norm(W x))`, as in the BN paper.
    #[default]
    BeforeActivation,
    /// `norm(act(W x))`.
    AfterActivation,
}

/// `act(norm(x))` or `norm(act(x))`, the norm measured by `instruments` as site `site`; just
/// `norm(x)` for a norm that is its own activation (FRN, EvoNorm). `x` is channels-first: its
/// units are axis 1.
pub(crate) fn norm_and_activate<const D: usize>(
    norm: &Norm,
    (position, activation): (NormPosition, Activation),
    site: impl Fn() -> String,
    x: Tensor<D>,
    instruments: &mut Instruments,
) -> Result<Tensor<D>, ModelError> {
    let mut normalize = |x| {
        instruments
            .norm_site(&site, 1, x, |x| norm.forward(x))
            .map_err(ModelError::norm(&site))
    };
    match position {
        _ if norm.includes_activation() => normalize(x),
        NormPosition::BeforeActivation => Ok(activation.apply(normalize(x)?)),
        NormPosition::AfterActivation => normalize(activation.apply(x)),
    }
}
