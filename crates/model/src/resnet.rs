//! Residual networks (He et al. 2016): a stem, stages of basic blocks with a norm after every
//! convolution, zero-padded or projection shortcuts, and a global-average-pool head.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use normlab_norm::{Norm, NormConfig};
use serde::{Deserialize, Serialize};

use crate::activation::norm_and_activate;
use crate::mlp::linear;
use crate::weights::conv_forward;
use crate::{Activation, Instruments, ModelError, Network, NormPosition};

/// How a block that changes the image size or the width adds its input to its output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shortcut {
    /// Every second pixel of the input, with zero channels added: no parameter and no norm
    /// (He et al. 2016, option A, their CIFAR networks).
    #[default]
    ZeroPad,
    /// A 1x1 convolution of stride 2 and a norm after it (option B, their ImageNet networks).
    Projection,
}

/// Configuration of [`Resnet`]: the CIFAR residual networks of He et al. (2016, section 4.2),
/// ResNet-20 by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResnetConfig {
    /// Channels of each stage; each stage after the first starts with a stride-2 block that
    /// halves the image. Default `[16, 32, 64]`.
    pub widths: Vec<usize>,
    /// Basic blocks per stage: a network of `2 * blocks * stages + 2` weighted layers. Default 3
    /// (ResNet-20; 5 gives ResNet-32, 9 ResNet-56).
    pub blocks: usize,
    /// Default zero padding.
    pub shortcut: Shortcut,
    /// The norm after every convolution (the stem, both convs of each block, projections).
    /// Default none.
    pub norm: NormConfig,
    /// Start the last norm of each block with `gamma = 0`, so that every block starts as the
    /// identity (Goyal et al. 2017; the GN paper's ResNets). Default false.
    pub zero_init_last_gamma: bool,
    /// Default relu.
    pub activation: Activation,
    /// Multiplies He et al.'s weight init, `N(0, 2 / fan_in)`. Default 1.
    pub init_scale: f64,
    /// Standardize each conv filter's weights before use (Weight Standardization, Qiao et al.
    /// 2019), meant to be combined with group or layer norm. Default false.
    pub weight_standardization: bool,
}

impl Default for ResnetConfig {
    fn default() -> Self {
        Self {
            widths: vec![16, 32, 64],
            blocks: 3,
            shortcut: Shortcut::default(),
            norm: NormConfig::None,
            zero_init_last_gamma: false,
            activation: Activation::default(),
            init_scale: 1.0,
            weight_standardization: false,
        }
    }
}

impl ResnetConfig {
    /// Checks what is wrong whatever the data: no stage, a stage without channels, no block,
    /// a stage narrower than the one before it with zero-padded shortcuts.
    pub fn validate(&self) -> Result<(), ModelError> {
        let invalid = |field, message: &str| {
            Err(ModelError::InvalidConfig {
                field,
                message: message.into(),
            })
        };
        if self.widths.is_empty() {
            return invalid("widths", "give at least one stage, e.g. [16, 32, 64]");
        }
        if self.widths.contains(&0) {
            return invalid("widths", "every stage needs at least 1 channel");
        }
        if self.blocks == 0 {
            return invalid("blocks", "must be at least 1");
        }
        let narrowing = self.widths.windows(2).any(|pair| pair[1] < pair[0]);
        if narrowing && self.shortcut == Shortcut::ZeroPad {
            return invalid(
                "widths",
                "a zero-padded shortcut cannot narrow: widen every stage, or use \
                 shortcut = \"projection\"",
            );
        }
        Ok(())
    }

    /// Weighted layers: the stem, two convs per block and the head.
    pub fn depth(&self) -> usize {
        2 * self.blocks * self.widths.len() + 2
    }

    /// Builds the network for images `[channels, height, width]` and `outputs` logits.
    pub fn init(
        &self,
        image: [usize; 3],
        outputs: usize,
        device: &Device,
    ) -> Result<Resnet, ModelError> {
        self.validate()?;
        let [channels, height, width] = image;
        let halvings = self.widths.len() - 1;
        if height >> halvings == 0 || width >> halvings == 0 {
            return Err(ModelError::InvalidConfig {
                field: "widths",
                message: format!(
                    "{} stages halve a {height}x{width} image {halvings} times, to nothing",
                    self.widths.len()
                ),
            });
        }
        let norm = |width: usize, gamma_zero: bool| -> Result<Norm, ModelError> {
            let config = match gamma_zero {
                true => self.norm.clone().with_gamma_init(0.0),
                false => self.norm.clone(),
            };
            config
                .init(width, device)
                .map_err(ModelError::norm(|| "norm".to_string()))
        };
        let stem = ConvNorm {
            conv: self.conv(channels, self.widths[0], 3, 1, device),
            norm: norm(self.widths[0], false)?,
        };
        let mut blocks = Vec::new();
        let mut input = self.widths[0];
        for (stage, &width) in self.widths.iter().enumerate() {
            for block in 0..self.blocks {
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                let changes = stride != 1 || input != width;
                let first = ConvNorm {
                    conv: self.conv(input, width, 3, stride, device),
                    norm: norm(width, false)?,
                };
                let second = ConvNorm {
                    conv: self.conv(width, width, 3, 1, device),
                    norm: norm(width, self.zero_init_last_gamma)?,
                };
                let projection = match (changes, self.shortcut) {
                    (true, Shortcut::Projection) => Some(ConvNorm {
                        conv: self.conv(input, width, 1, stride, device),
                        norm: norm(width, false)?,
                    }),
                    _ => None,
                };
                blocks.push(BasicBlock {
                    first,
                    second,
                    projection,
                    stride,
                    widen: width - input.min(width),
                });
                input = width;
            }
        }
        Ok(Resnet {
            stem,
            blocks,
            blocks_per_stage: self.blocks,
            head: linear(input, outputs, self.init_scale, device),
            activation: self.activation,
            weight_standardization: self.weight_standardization,
        })
    }

    /// A square convolution without bias (the norm after it has its own shift), He et al.'s
    /// init; "same" padding, so that stride 2 halves the image (rounding up).
    fn conv(
        &self,
        input: usize,
        output: usize,
        kernel: usize,
        stride: usize,
        device: &Device,
    ) -> Conv2d {
        Conv2dConfig::new([input, output], [kernel; 2])
            .with_stride([stride; 2])
            .with_padding(PaddingConfig2d::Explicit(
                kernel / 2,
                kernel / 2,
                kernel / 2,
                kernel / 2,
            ))
            .with_bias(false)
            .with_initializer(Initializer::KaimingNormal {
                gain: 2f64.sqrt() * self.init_scale,
                fan_out_only: false,
            })
            .init(device)
    }
}

/// A convolution and the norm after it.
#[derive(Module, Debug)]
pub struct ConvNorm {
    /// Without bias.
    pub conv: Conv2d,
    /// After the convolution, before the activation.
    pub norm: Norm,
}

/// Two 3x3 convolutions, a norm after each, and a shortcut around them:
/// `act(norm2(conv2(act(norm1(conv1(x))))) + shortcut(x))`.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// Of stride `stride`.
    pub first: ConvNorm,
    /// Its norm starts at `gamma = 0` with `zero_init_last_gamma`.
    pub second: ConvNorm,
    /// The projection shortcut, where the block changes the size and the shortcut projects.
    pub projection: Option<ConvNorm>,
    /// 2 where the block halves the image, else 1.
    #[module(skip)]
    pub stride: usize,
    /// Zero channels a parameter-free shortcut adds to the input.
    #[module(skip)]
    pub widen: usize,
}

/// A residual network: `stem -> blocks -> global average pool -> linear`.
#[derive(Module, Debug)]
pub struct Resnet {
    /// A 3x3 convolution to the first stage's width, and its norm.
    pub stem: ConvNorm,
    /// Every block of every stage, in order.
    pub blocks: Vec<BasicBlock>,
    /// Blocks in each stage.
    #[module(skip)]
    pub blocks_per_stage: usize,
    /// The linear layer that gives the logits.
    pub head: Linear,
    /// After each norm but the last of a block, and after each block's sum.
    #[module(skip)]
    pub activation: Activation,
    /// Each conv's filters are standardized before use.
    pub weight_standardization: bool,
}

/// `images: [N, C, H, W]` -> logits `[N, outputs]`.
impl Network<Tensor<4>> for Resnet {
    fn forward_instrumented(
        &self,
        x: Tensor<4>,
        instruments: &mut Instruments,
    ) -> Result<Tensor<2>, ModelError> {
        ModelError::check_not_empty(&x.dims())?;
        let mut layer = |conv_norm: &ConvNorm, x: Tensor<4>, activate: bool, site: String| {
            let x = conv_forward(&conv_norm.conv, self.weight_standardization, x);
            let site = || site.clone();
            match activate {
                true => {
                    let placement = (NormPosition::BeforeActivation, self.activation);
                    norm_and_activate(&conv_norm.norm, placement, site, x, instruments)
                }
                false => instruments
                    .norm_site(site, 1, x, |x| conv_norm.norm.forward(x))
                    .map_err(ModelError::norm(site)),
            }
        };
        let mut x = layer(&self.stem, x, true, "stem".into())?;
        for (i, block) in self.blocks.iter().enumerate() {
            let name = format!(
                "stage {} block {}",
                i / self.blocks_per_stage + 1,
                i % self.blocks_per_stage + 1
            );
            let residual = layer(&block.first, x.clone(), true, format!("{name} conv 1"))?;
            let residual = layer(&block.second, residual, false, format!("{name} conv 2"))?;
            let shortcut = match &block.projection {
                Some(projection) => layer(projection, x, false, format!("{name} shortcut"))?,
                None => block.zero_padded(x),
            };
            x = self.activation.apply(residual + shortcut);
        }
        let features = x.mean_dims(&[2, 3]).flatten::<2>(1, 3);
        Ok(self.head.forward(features))
    }
}

impl Resnet {
    /// Every norm, in the order the forward pass meets them.
    pub fn norms_mut(&mut self) -> impl Iterator<Item = &mut Norm> {
        self.conv_norms_mut().map(|(_, norm)| norm)
    }

    /// Every convolution with the norm after it, in the order the forward pass meets them.
    pub fn conv_norms_mut(&mut self) -> impl Iterator<Item = (&mut Conv2d, &mut Norm)> {
        let blocks = self.blocks.iter_mut().flat_map(|block| {
            [Some(&mut block.first), Some(&mut block.second)]
                .into_iter()
                .chain([block.projection.as_mut()])
                .flatten()
        });
        std::iter::once(&mut self.stem)
            .chain(blocks)
            .map(|ConvNorm { conv, norm }| (conv, norm))
    }
}

impl BasicBlock {
    /// The parameter-free shortcut: every `stride`-th pixel, `widen` zero channels added
    /// (half before the input's channels, half after, as the reference CIFAR code pads).
    fn zero_padded(&self, x: Tensor<4>) -> Tensor<4> {
        let x = match self.stride {
            1 => x,
            s => avg_pool2d(x, AvgPoolOptions::new([1, 1]).with_stride([s, s])),
        };
        if self.widen == 0 {
            return x;
        }
        let [n, _, h, w] = x.dims();
        let device = x.device();
        let before = self.widen / 2;
        // Only non-empty parts: burn-flex mishandles empty tensors in some ops.
        let zeros = |channels| Tensor::<4>::zeros([n, channels, h, w], &device);
        let parts = [(before, None), (0, Some(x)), (self.widen - before, None)];
        let parts = parts.into_iter().filter_map(|(channels, x)| match x {
            Some(x) => Some(x),
            None => (channels > 0).then(|| zeros(channels)),
        });
        Tensor::cat(parts.collect(), 1)
    }
}
