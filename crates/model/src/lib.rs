//! Dense, convolutional and recurrent networks with a norm slot wherever the literature puts one,
//! built on the public API of [`normlab_norm`].
//!
//! A [`ModelConfig`] (serde; the runner reads it from TOML) says which network, its sizes and
//! the [`NormConfig`] of every slot; [`ModelConfig::init`] builds a [`Model`] for the shape of the
//! data. [`Instruments`], passed to a forward pass, measure it: activation statistics at every
//! norm site ([`probe`]), the norm layers' time ([`norm_time`]), and the loss's gradient with
//! respect to every hidden state of a recurrence ([`gradient_flow`]). [`subnormals`] runs training
//! on threads that flush subnormal floats to zero, where a run asks for it.

#![warn(missing_docs)]

mod activation;
mod cnn;
mod conv;
mod error;
mod fixed_statistics;
mod forward_only;
pub mod gradient_flow;
mod init;
mod instruments;
mod lstm_cell;
mod mlp;
mod network;
pub mod norm_time;
pub mod probe;
mod recurrent;
mod resnet;
pub mod subnormals;
mod time_step;
mod weights;

use burn::prelude::*;
use normlab_norm::{Kernels, NormConfig};
use serde::{Deserialize, Serialize};

pub use activation::{Activation, HiddenLayout, NormPosition};
pub use cnn::{Cnn, CnnConfig, Head, Pool};
pub use conv::conv2d;
pub use error::ModelError;
pub use forward_only::release_finished_graphs;
pub use instruments::Instruments;
pub use mlp::{Mlp, MlpConfig};
pub use network::Network;
pub use recurrent::{
    CellKind, Placement, RecurrentConfig, RecurrentInit, RecurrentLayer, RecurrentNet,
    SequenceOutput,
};
pub use resnet::{BasicBlock, ConvNorm, Resnet, ResnetConfig, Shortcut};

/// Which network to build; in TOML `kind = "mlp" | "cnn" | "resnet" | "recurrent"` plus its
/// options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    /// A multilayer perceptron.
    Mlp(MlpConfig),
    /// A convolutional network.
    Cnn(CnnConfig),
    /// A residual convolutional network.
    Resnet(ResnetConfig),
    /// Stacked recurrent layers (RNN, LSTM or GRU).
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
        /// `[N, T, F]`.
        values: Tensor<3>,
        /// `[N, T]`, true at real steps; `None` when every sequence is full length.
        mask: Option<Tensor<2, Bool>>,
    },
}

impl Input {
    /// The shape of the values: `[N, F]`, `[N, C, H, W]` or `[N, T, F]`.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Self::Features(x) => x.dims().to_vec(),
            Self::Images(x) => x.dims().to_vec(),
            Self::Sequences { values, .. } => values.dims().to_vec(),
        }
    }
}

impl ModelConfig {
    /// The names accepted for `kind`.
    pub const KINDS: [&'static str; 4] = ["mlp", "cnn", "resnet", "recurrent"];

    /// The config of kind `kind` read from its options alone: a table without the `kind` key.
    ///
    /// The tagged form is read by serde's internally tagged enums, which buffer the table, so an
    /// error in an option is reported at the table. Read here, every option keeps its own path
    /// (`model.hidden`), for callers that locate errors by it. An unknown kind is serde's
    /// unknown-variant error.
    pub fn from_options<'de, D: serde::Deserializer<'de>>(
        kind: &str,
        options: D,
    ) -> Result<Self, D::Error> {
        Ok(match kind {
            "mlp" => Self::Mlp(MlpConfig::deserialize(options)?),
            "cnn" => Self::Cnn(CnnConfig::deserialize(options)?),
            "resnet" => Self::Resnet(ResnetConfig::deserialize(options)?),
            "recurrent" => Self::Recurrent(RecurrentConfig::deserialize(options)?),
            other => {
                return Err(serde::de::Error::unknown_variant(other, &Self::KINDS));
            }
        })
    }

    /// The norm in every slot of the network.
    pub fn norm(&self) -> &NormConfig {
        match self {
            Self::Mlp(c) => &c.norm,
            Self::Cnn(c) => &c.norm,
            Self::Resnet(c) => &c.norm,
            Self::Recurrent(c) => &c.norm,
        }
    }

    /// Checks what is wrong whatever the data, so that a config can be refused as soon as it
    /// is read: the network's own sizes and the norm's options (`epsilon <= 0`, `groups = 0`,
    /// ...). What depends on the data waits for [`init`](ModelConfig::init).
    pub fn validate(&self) -> Result<(), ModelError> {
        match self {
            Self::Mlp(c) => c.validate(),
            Self::Cnn(c) => c.validate(),
            Self::Resnet(c) => c.validate(),
            Self::Recurrent(c) => c.validate(),
        }?;
        self.norm()
            .validate_options()
            .map_err(ModelError::norm(|| "norm".to_string()))
    }

    /// The same network with `norm` in every slot.
    pub fn with_norm(mut self, norm: NormConfig) -> Self {
        match &mut self {
            Self::Mlp(c) => c.norm = norm,
            Self::Cnn(c) => c.norm = norm,
            Self::Resnet(c) => c.norm = norm,
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
            (Self::Resnet(c), InputShape::Image(image)) => {
                Model::Resnet(c.init(image, outputs, device)?)
            }
            (Self::Recurrent(c), InputShape::Sequence(f)) => {
                Model::Recurrent(c.init(f, outputs, device)?)
            }
            (config, shape) => {
                return Err(ModelError::WrongInput {
                    model: config.kind().name(),
                    expected: config.kind().expected_input(),
                    got: format!("{shape:?}"),
                });
            }
        })
    }

    /// The network in a few words, for a plot's title: `MLP 64-64`, `CNN 4/8/16 (2 convs a
    /// block)`, `ResNet-20 8/16/32`, `LSTM 128`.
    pub fn describe(&self) -> String {
        let join = |sizes: &[usize], sep: &str| -> String {
            let parts: Vec<String> = sizes.iter().map(usize::to_string).collect();
            parts.join(sep)
        };
        match self {
            Self::Mlp(c) => format!("MLP {}", join(&c.hidden, "-")),
            Self::Cnn(c) if c.convs_per_block > 1 => format!(
                "CNN {} ({} convs a block)",
                join(&c.channels, "/"),
                c.convs_per_block
            ),
            Self::Cnn(c) => format!("CNN {}", join(&c.channels, "/")),
            Self::Resnet(c) => format!("ResNet-{} {}", c.depth(), join(&c.widths, "/")),
            Self::Recurrent(c) => {
                let cell = format!("{:?}", c.cell).to_uppercase();
                match c.layers {
                    1 => format!("{cell} {}", c.hidden),
                    n => format!("{cell} {n}x{}", c.hidden),
                }
            }
        }
    }

    /// The `[height, width]` of the feature maps that the deepest norms of a conv network see,
    /// for images `[channels, height, width]`: a batch norm there averages `N * height * width`
    /// values per channel. None for dense and recurrent networks.
    pub fn deepest_map(&self, image: [usize; 3]) -> Option<[usize; 2]> {
        let [_, height, width] = image;
        let halvings = match self {
            // The last block's norms come before its pooling.
            Self::Cnn(c) if c.pool != Pool::None => c.channels.len() - 1,
            Self::Cnn(_) => 0,
            Self::Resnet(c) => c.widths.len() - 1,
            Self::Mlp(_) | Self::Recurrent(_) => return None,
        };
        // A CNN pools with floor; a residual network's stride-2 convolutions round up.
        let shrink = |size: usize| match self {
            Self::Resnet(_) => (0..halvings).fold(size, |s, _| s.div_ceil(2)),
            _ => size >> halvings,
        };
        Some([shrink(height), shrink(width)])
    }
}

/// `kind()` of [`ModelConfig`] and [`Model`], whose variants are named alike.
macro_rules! kind_of_variant {
    ($($ty:ty),*) => {$(
        impl $ty {
            /// Which of the networks this is (or builds).
            pub fn kind(&self) -> ModelKind {
                match self {
                    Self::Mlp(_) => ModelKind::Mlp,
                    Self::Cnn(_) => ModelKind::Cnn,
                    Self::Resnet(_) => ModelKind::Resnet,
                    Self::Recurrent(_) => ModelKind::Recurrent,
                }
            }
        }
    )*};
}
kind_of_variant!(ModelConfig, Model);

/// The networks this crate builds, without their options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// [`Mlp`].
    Mlp,
    /// [`Cnn`].
    Cnn,
    /// [`Resnet`].
    Resnet,
    /// [`RecurrentNet`].
    Recurrent,
}

impl ModelKind {
    /// The name a config gives as `kind`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mlp => "mlp",
            Self::Cnn => "cnn",
            Self::Resnet => "resnet",
            Self::Recurrent => "recurrent",
        }
    }

    /// The input it takes, for error messages.
    fn expected_input(self) -> &'static str {
        match self {
            Self::Mlp => "feature or image",
            Self::Cnn | Self::Resnet => "image",
            Self::Recurrent => "sequence",
        }
    }
}

/// Any network this crate builds.
// Moved a few times per training step: copying the largest variant's few hundred bytes costs
// nothing next to the step, and boxing would put a pointer between every user and the layers.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Model {
    /// A multilayer perceptron.
    Mlp(Mlp),
    /// A convolutional network.
    Cnn(Cnn),
    /// A residual convolutional network.
    Resnet(Resnet),
    /// Stacked recurrent layers.
    Recurrent(RecurrentNet),
}

impl Network<Input> for Model {
    fn forward_instrumented(
        &self,
        input: Input,
        instruments: &mut Instruments,
    ) -> Result<Tensor<2>, ModelError> {
        let shape = input.shape();
        match (self, input) {
            (Self::Mlp(m), Input::Features(x)) => m.forward_instrumented(x, instruments),
            (Self::Mlp(m), Input::Images(x)) => {
                m.forward_instrumented(x.flatten(1, 3), instruments)
            }
            (Self::Cnn(m), Input::Images(x)) => m.forward_instrumented(x, instruments),
            (Self::Resnet(m), Input::Images(x)) => m.forward_instrumented(x, instruments),
            (Self::Recurrent(m), Input::Sequences { values, mask }) => {
                m.forward_instrumented((values, mask), instruments)
            }
            (model, input) => Err(ModelError::WrongInput {
                model: model.kind().name(),
                expected: model.kind().expected_input(),
                got: match input {
                    Input::Features(_) => format!("features {shape:?}"),
                    Input::Images(_) => format!("images {shape:?}"),
                    Input::Sequences { .. } => format!("sequences {shape:?}"),
                },
            }),
        }
    }
}

impl Model {
    /// The same model with every norm layer running `kernels`: normlab's fused kernels where
    /// the backend has them (the default) or burn's composed tensor ops.
    pub fn with_norm_kernels(self, kernels: Kernels) -> Model {
        self.map_norms(|norm| Ok(norm.with_kernels(kernels)))
            .expect("setting the kernels fails for no norm")
    }

    /// The same model with its dropout off and its norms as they were: for a score with batch
    /// statistics, `model.valid().train().without_dropout()`, which must neither add dropout's
    /// noise to the score nor draw from the random numbers that training's masks come from (a
    /// run's training would then depend on when it was evaluated).
    pub fn without_dropout(self) -> Model {
        match self {
            Model::Mlp(mut mlp) => {
                mlp.dropout.prob = 0.0;
                Model::Mlp(mlp)
            }
            Model::Cnn(mut cnn) => {
                cnn.dropout.prob = 0.0;
                Model::Cnn(cnn)
            }
            // No dropout in a residual network.
            Model::Resnet(net) => Model::Resnet(net),
            Model::Recurrent(mut net) => {
                net.dropout.prob = 0.0;
                Model::Recurrent(net)
            }
        }
    }

    /// The same model with every batch norm re-estimating its population statistics as the
    /// equal-weight average over the training-mode forward passes that follow (PreciseBN, see
    /// [`NormLayer::start_precise_statistics`](normlab_norm::NormLayer::start_precise_statistics)):
    /// call it on a copy, `model.valid().train().for_precise_statistics()`, run training batches
    /// through it with the weights fixed, then evaluate its `valid()`.
    pub fn for_precise_statistics(self) -> Model {
        self.map_norms(|norm| Ok(norm.for_precise_statistics()))
            .expect("restarting statistics fails for no norm")
    }
}
