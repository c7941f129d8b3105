//! Plain convolutional networks: blocks of `conv -> norm -> activation`, each followed by pooling,
//! and a global-average-pool or dense head.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, PaddingConfig2d};
use burn::prelude::*;
use normlab_norm::{Norm, NormConfig};
use serde::{Deserialize, Serialize};

use crate::activation::norm_and_activate;
use crate::init::scaled_kaiming;
use crate::mlp::linear;
use crate::weights::conv_forward;
use crate::{Activation, HiddenLayout, Instruments, ModelError, Network, NormPosition};

/// Downsampling after each conv block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// 2 x 2 max pooling, stride 2.
    #[default]
    Max,
    /// 2 x 2 average pooling, stride 2.
    Avg,
    /// No pooling: every block keeps the image size.
    None,
}

/// How the feature maps become logits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// Average each channel over the image, then one linear layer.
    #[default]
    GlobalAverage,
    /// Flatten the last feature maps into one linear layer.
    Dense,
}

/// Configuration of [`Cnn`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CnnConfig {
    /// Output channels of each conv block. Default `[16, 32]`.
    pub channels: Vec<usize>,
    /// Convs (each with its norm and activation) per block, before the block's pooling: 2 gives
    /// a VGG-style network. Default 1.
    pub convs_per_block: usize,
    /// Square kernel size of every conv ("same" padding). Default 3.
    pub kernel_size: usize,
    /// Default 2 x 2 max pooling after each block.
    pub pool: Pool,
    /// Default global average pooling.
    pub head: Head,
    /// Default relu.
    pub activation: Activation,
    /// The norm after each conv. Default none.
    pub norm: NormConfig,
    /// Default before the activation.
    pub norm_position: NormPosition,
    /// Dropout probability before the head. Default 0.
    pub dropout: f64,
    /// Multiplies the default weight init. Default 1.
    pub init_scale: f64,
    /// Standardize each conv filter's weights before use (Weight Standardization, Qiao et al.
    /// 2019), meant to be combined with group or layer norm. Default false.
    pub weight_standardization: bool,
}

impl Default for CnnConfig {
    fn default() -> Self {
        Self {
            channels: vec![16, 32],
            convs_per_block: 1,
            kernel_size: 3,
            pool: Pool::default(),
            head: Head::default(),
            activation: Activation::default(),
            norm: NormConfig::None,
            norm_position: NormPosition::default(),
            dropout: 0.0,
            init_scale: 1.0,
            weight_standardization: false,
        }
    }
}

impl CnnConfig {
    /// Checks what is wrong whatever the data: no blocks, a block without channels, no
    /// convolution per block, an even or zero kernel.
    pub fn validate(&self) -> Result<(), ModelError> {
        let invalid = |field, message: &str| {
            Err(ModelError::InvalidConfig {
                field,
                message: message.into(),
            })
        };
        if self.channels.is_empty() {
            return invalid("channels", "give at least one block, e.g. [16, 32]");
        }
        if self.channels.contains(&0) {
            return invalid("channels", "every block needs at least 1 channel");
        }
        if self.convs_per_block == 0 {
            return invalid("convs_per_block", "must be at least 1");
        }
        if self.kernel_size.is_multiple_of(2) {
            return invalid("kernel_size", "must be odd, for \"same\" padding");
        }
        Ok(())
    }

    /// Builds the network for images `[channels, height, width]` and `outputs` logits.
    pub fn init(
        &self,
        image: [usize; 3],
        outputs: usize,
        device: &Device,
    ) -> Result<Cnn, ModelError> {
        self.validate()?;
        let [mut channels_in, mut h, mut w] = image;
        let (mut convs, mut norms) = (Vec::new(), Vec::new());
        for &channels in &self.channels {
            for _ in 0..self.convs_per_block {
                let i = convs.len();
                convs.push(
                    Conv2dConfig::new([channels_in, channels], [self.kernel_size; 2])
                        .with_padding(PaddingConfig2d::Same)
                        .with_initializer(scaled_kaiming(self.init_scale))
                        .init(device),
                );
                norms.push(
                    self.norm
                        .init(channels, device)
                        .map_err(ModelError::norm(|| site(i)))?,
                );
                channels_in = channels;
            }
            if self.pool != Pool::None {
                (h, w) = (h / 2, w / 2);
            }
        }
        if h == 0 || w == 0 {
            return Err(ModelError::InvalidConfig {
                field: "channels",
                message: format!(
                    "{} pooled blocks shrink a {}x{} image to nothing",
                    self.channels.len(),
                    image[1],
                    image[2]
                ),
            });
        }
        let head_inputs = match self.head {
            Head::GlobalAverage => channels_in,
            Head::Dense => channels_in * h * w,
        };
        Ok(Cnn {
            convs,
            norms,
            max_pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            avg_pool: AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            dropout: DropoutConfig::new(self.dropout).init(),
            head: linear(head_inputs, outputs, self.init_scale, device),
            pool: self.pool,
            convs_per_block: self.convs_per_block,
            head_kind: self.head,
            layout: HiddenLayout {
                activation: self.activation,
                norm_position: self.norm_position,
                weight_standardization: self.weight_standardization,
            },
        })
    }
}

/// A small CNN: `[conv -> norm -> activation -> pool] x k -> head`.
#[derive(Module, Debug)]
pub struct Cnn {
    /// One 3x3 (or `kernel_size`) "same" convolution per block.
    pub convs: Vec<Conv2d>,
    /// The norm after each convolution.
    pub norms: Vec<Norm>,
    /// Used after each block with [`Pool::Max`].
    pub max_pool: MaxPool2d,
    /// Used after each block with [`Pool::Avg`].
    pub avg_pool: AvgPool2d,
    /// Before the head.
    pub dropout: Dropout,
    /// The linear layer that gives the logits.
    pub head: Linear,
    /// Downsampling after each block.
    #[module(skip)]
    pub pool: Pool,
    /// Convs per block: the pooling comes after every this many.
    #[module(skip)]
    pub convs_per_block: usize,
    /// How the last feature maps become the head's input.
    #[module(skip)]
    pub head_kind: Head,
    /// The activation, norm position and weight standardization of every hidden layer.
    #[module(skip)]
    pub layout: HiddenLayout,
}

/// `images: [N, C, H, W]` -> logits `[N, outputs]`.
impl Network<Tensor<4>> for Cnn {
    fn forward_instrumented(
        &self,
        mut x: Tensor<4>,
        instruments: &mut Instruments,
    ) -> Result<Tensor<2>, ModelError> {
        ModelError::check_not_empty(&x.dims())?;
        for (i, (conv, norm)) in self.convs.iter().zip(&self.norms).enumerate() {
            x = conv_forward(conv, self.layout.weight_standardization, x);
            x = norm_and_activate(norm, self.layout.placement(), || site(i), x, instruments)?;
            if (i + 1) % self.convs_per_block != 0 {
                continue;
            }
            x = match self.pool {
                Pool::Max => self.max_pool.forward(x),
                Pool::Avg => self.avg_pool.forward(x),
                Pool::None => x,
            };
        }
        let features = match self.head_kind {
            Head::GlobalAverage => x.mean_dims(&[2, 3]).flatten::<2>(1, 3),
            Head::Dense => x.flatten::<2>(1, 3),
        };
        Ok(self.head.forward(self.dropout.forward(features)))
    }
}

fn site(block: usize) -> String {
    format!("conv {}", block + 1)
}
