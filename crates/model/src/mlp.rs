//! Multilayer perceptrons: `linear -> norm -> activation -> dropout` per hidden layer.

use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use normlab_norm::{Norm, NormConfig};
use serde::{Deserialize, Serialize};

use crate::activation::norm_and_activate;
use crate::init::scaled_kaiming;
use crate::weights::linear_forward;
use crate::{Activation, HiddenLayout, Instruments, ModelError, Network, NormPosition};

/// Configuration of [`Mlp`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlpConfig {
    /// Width of each hidden layer. Default `[100, 100, 100]` (the BN paper's MNIST network).
    pub hidden: Vec<usize>,
    /// Default relu.
    pub activation: Activation,
    /// The norm after each hidden linear layer. Default none.
    pub norm: NormConfig,
    /// Default before the activation.
    pub norm_position: NormPosition,
    /// Dropout probability after each hidden layer. Default 0.
    pub dropout: f64,
    /// Multiplies the default weight init. Default 1.
    pub init_scale: f64,
    /// Standardize each hidden unit's weights before use (Weight Standardization). Default
    /// false.
    pub weight_standardization: bool,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            hidden: vec![100, 100, 100],
            activation: Activation::default(),
            norm: NormConfig::None,
            norm_position: NormPosition::default(),
            dropout: 0.0,
            init_scale: 1.0,
            weight_standardization: false,
        }
    }
}

impl MlpConfig {
    /// Checks what is wrong whatever the data: a hidden layer of width 0.
    pub fn validate(&self) -> Result<(), ModelError> {
        match self.hidden.contains(&0) {
            true => Err(ModelError::InvalidConfig {
                field: "hidden",
                message: "every hidden layer needs at least 1 unit".into(),
            }),
            false => Ok(()),
        }
    }

    /// Builds the network for `inputs` features and `outputs` logits.
    pub fn init(&self, inputs: usize, outputs: usize, device: &Device) -> Result<Mlp, ModelError> {
        self.validate()?;
        let mut layers = Vec::new();
        let mut norms = Vec::new();
        let mut width = inputs;
        for (i, &hidden) in self.hidden.iter().enumerate() {
            layers.push(linear(width, hidden, self.init_scale, device));
            norms.push(
                self.norm
                    .init(hidden, device)
                    .map_err(ModelError::norm(|| site(i)))?,
            );
            width = hidden;
        }
        Ok(Mlp {
            layers,
            norms,
            head: linear(width, outputs, self.init_scale, device),
            dropout: DropoutConfig::new(self.dropout).init(),
            layout: HiddenLayout {
                activation: self.activation,
                norm_position: self.norm_position,
                weight_standardization: self.weight_standardization,
            },
        })
    }
}

pub(crate) fn linear(inputs: usize, outputs: usize, scale: f64, device: &Device) -> Linear {
    LinearConfig::new(inputs, outputs)
        .with_initializer(scaled_kaiming(scale))
        .init(device)
}

fn site(layer: usize) -> String {
    format!("hidden {}", layer + 1)
}

/// A multilayer perceptron: `[linear -> norm -> activation -> dropout] x k -> linear`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// The hidden linear layers.
    pub layers: Vec<Linear>,
    /// The norm after each hidden layer.
    pub norms: Vec<Norm>,
    /// The linear layer that gives the logits.
    pub head: Linear,
    /// After each hidden layer's activation.
    pub dropout: Dropout,
    /// The activation, norm position and weight standardization of every hidden layer.
    #[module(skip)]
    pub layout: HiddenLayout,
}

/// `x: [N, inputs]` -> logits `[N, outputs]`.
impl Network<Tensor<2>> for Mlp {
    fn forward_instrumented(
        &self,
        mut x: Tensor<2>,
        instruments: &mut Instruments,
    ) -> Result<Tensor<2>, ModelError> {
        ModelError::check_not_empty(&x.dims())?;
        let standardize = self.layout.weight_standardization;
        for (i, (layer, norm)) in self.layers.iter().zip(&self.norms).enumerate() {
            x = linear_forward(layer, standardize, x);
            x = norm_and_activate(norm, self.layout.placement(), || site(i), x, instruments)?;
            x = self.dropout.forward(x);
        }
        Ok(self.head.forward(x))
    }
}
