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

/// How each hidden layer of an [`Mlp`](crate::Mlp) or a [`Cnn`](crate::Cnn) meets its norm and
/// activation (the networks' configs give each field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HiddenLayout {
    /// After each norm (or before it, see `norm_position`).
    pub activation: Activation,
    /// Where each norm sits relative to the activation.
    pub norm_position: NormPosition,
    /// Each layer's weights (a conv's filters) are standardized before use.
    pub weight_standardization: bool,
}

impl HiddenLayout {
    /// Where the norm sits and the activation, as [`norm_and_activate`] takes them.
    pub(crate) fn placement(self) -> (NormPosition, Activation) {
        (self.norm_position, self.activation)
    }

    /// For folding eval-mode norms into their layers: whether a norm can fold (it sits before
    /// the activation), and whether the weights were standardized, which the folded layer then
    /// holds as they are applied (so standardization is turned off here).
    pub(crate) fn take_for_folding(&mut self) -> (bool, bool) {
        let foldable = self.norm_position == NormPosition::BeforeActivation;
        (foldable, std::mem::take(&mut self.weight_standardization))
    }
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
