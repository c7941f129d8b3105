//! Dense, convolutional and recurrent networks with a norm slot wherever the literature puts one,
//! built on the public API of [`normlab_norm`].
//!
//! A [`ModelConfig`] (serde; the runner reads it from TOML) says which network, its sizes and
//! the [`NormConfig`] of every slot; [`ModelConfig::init`] builds a [`Model`] for the shape of the
//! data. [`probe::capture`] records activation statistics at every norm site while the model runs.

mod activation;
mod cnn;
mod error;
mod init;
mod mlp;
pub mod probe;
mod recurrent;

use burn::prelude::*;
use normlab_norm::NormConfig;
use serde::{Deserialize, Serialize};

pub use activation::{Activation, NormPosition};
pub use cnn::{Cnn, CnnConfig, Head, Pool};
pub use error::ModelError;
pub use mlp::{Mlp, MlpConfig};
pub use recurrent::{
    CellKind, Placement, RecurrentConfig, RecurrentLayer, RecurrentNet, SequenceOutput,
};

/// Which network to build; in TOML `kind = "mlp" | "cnn" | "recurrent"` plus its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    Mlp(MlpConfig),
    Cnn(CnnConfig),
    Recurrent(RecurrentConfig),
}

/// The shape of one example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputShape {
    /// A feature vector.
    Features(usize),
    /// An image `[channels, height, width]`.
    Image([usize; 3]),
    /// A sequence with this many features per step.
    Sequence(usize),
}

/// A batch of inputs.
// Moved once per forward pass: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Input {
    /// `[N, features]`.
    Features(Tensor<2>),
    /// `[N, C, H, W]`.
    Images(Tensor<4>),
    /// `[N, T, F]`, with an optional padding mask `[N, T]` (true = real step).
    Sequences {
        values: Tensor<3>,
        mask: Option<Tensor<2, Bool>>,
    },
}

impl ModelConfig {
    /// The norm in every slot of the network.
    pub fn norm(&self) -> &NormConfig {
        match self {
            Self::Mlp(c) => &c.norm,
            Self::Cnn(c) => &c.norm,
            Self::Recurrent(c) => &c.norm,
        }
    }

    /// The same network with `norm` in every slot.
    pub fn with_norm(mut self, norm: NormConfig) -> Self {
        match &mut self {
            Self::Mlp(c) => c.norm = norm,
            Self::Cnn(c) => c.norm = norm,
            Self::Recurrent(c) => c.norm = norm,
        }
        self
    }

    /// Builds the network for examples of shape `input` and `outputs` logits. An MLP takes
    /// images too (flattened); a CNN needs images and a recurrent net sequences.
    pub fn init(
        &self,
        input: InputShape,
        outputs: usize,
        device: &Device,
    ) -> Result<Model, ModelError> {
        Ok(match (self, input) {
            (Self::Mlp(c), InputShape::Features(n)) => Model::Mlp(c.init(n, outputs, device)?),
            (Self::Mlp(c), InputShape::Image([ch, h, w])) => {
                Model::Mlp(c.init(ch * h * w, outputs, device)?)
            }
            (Self::Cnn(c), InputShape::Image(image)) => Model::Cnn(c.init(image, outputs, device)?),
            (Self::Recurrent(c), InputShape::Sequence(f)) => {
                Model::Recurrent(c.init(f, outputs, device)?)
            }
            (config, shape) => {
                return Err(ModelError::WrongInput {
                    model: config.name(),
                    expected: expected_input(config.name()),
                    got: format!("{shape:?}"),
                });
            }
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Mlp(_) => "mlp",
            Self::Cnn(_) => "cnn",
            Self::Recurrent(_) => "recurrent",
        }
    }
}

/// Any network this crate builds.
#[derive(Module, Debug)]
pub enum Model {
    Mlp(Mlp),
    Cnn(Cnn),
    Recurrent(RecurrentNet),
}

impl Model {
    /// Logits `[N, outputs]`, or `[N * T, outputs]` for a recurrent net predicting every step.
    pub fn forward(&self, input: Input) -> Result<Tensor<2>, ModelError> {
        match (self, input) {
            (Self::Mlp(m), Input::Features(x)) => m.forward(x),
            (Self::Mlp(m), Input::Images(x)) => m.forward(x.flatten(1, 3)),
            (Self::Cnn(m), Input::Images(x)) => m.forward(x),
            (Self::Recurrent(m), Input::Sequences { values, mask }) => m.forward(values, mask),
            (model, input) => Err(ModelError::WrongInput {
                model: model.name(),
                expected: expected_input(model.name()),
                got: match input {
                    Input::Features(x) => format!("features {:?}", x.dims()),
                    Input::Images(x) => format!("images {:?}", x.dims()),
                    Input::Sequences { values, .. } => format!("sequences {:?}", values.dims()),
                },
            }),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Mlp(_) => "mlp",
            Self::Cnn(_) => "cnn",
            Self::Recurrent(_) => "recurrent",
        }
    }
}

fn expected_input(model: &str) -> &'static str {
    match model {
        "mlp" => "feature or image",
        "cnn" => "image",
        _ => "sequence",
    }
}
