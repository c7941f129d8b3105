//! Stacked recurrent layers (RNN, LSTM, GRU) written as step functions, with norms inside the
//! recurrence where the literature puts them.

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::{sigmoid, tanh};
use normlab_norm::{Kernels, Norm, NormConfig};
use serde::{Deserialize, Serialize};

use crate::init::scaled_kaiming;
use crate::lstm_cell;
use crate::mlp::linear;
use crate::time_step::time_steps;
use crate::{Instruments, ModelError, Network};

/// The recurrent cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    /// Elman: `h = tanh(Wx x + Wh h + b)`.
    Rnn,
    /// Long short-term memory, gates `i, f, g, o`.
    #[default]
    Lstm,
    /// Gated recurrent unit, PyTorch's formulation (`r` applied after `W_h h`).
    Gru,
}

impl CellKind {
    /// How many `hidden`-wide pre-activations one step computes.
    fn gates(self) -> usize {
        match self {
            Self::Rnn => 1,
            Self::Lstm => 4,
            Self::Gru => 3,
        }
    }
}

/// Where the norms sit in a recurrent layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// On the input term `Wx x_t` only, computed over the whole sequence before the recurrence:
    /// between stacked layers, never inside the loop (Laurent et al. 2016).
    Vertical,
    /// Inside the recurrence at every step: on `Wx x_t` and `Wh h_{t-1}` separately, and for the
    /// LSTM on the cell state before its `tanh` (LN-LSTM; recurrent BN, Cooijmans et al. 2016).
    #[default]
    Horizontal,
    /// Inside the recurrence at every step, on the summed pre-activation
    /// `Wx x_t + Wh h_{t-1}`: the BN-RNN of recurrent BN's Figure 1,
    /// `h_t = tanh(BN(Wh h_{t-1} + Wx x_t))` (the bias after the norm). RNN and LSTM cells; the
    /// GRU mixes its terms differently and refuses it.
    Sum,
}

/// How a recurrent layer's weight matrices start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecurrentInit {
    /// burn's (and PyTorch's) default, `U(±sqrt(1 / fan_in))` times `init_scale`.
    #[default]
    Default,
    /// The recurrent weights `Wh` as the identity, one per gate (Le et al. 2015; recurrent
    /// BN's Figure 1); the input weights `Wx` orthogonal (Saxe et al. 2014).
    IdentityOrthogonal,
}

/// What the network predicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SequenceOutput {
    /// One prediction per sequence from its last real step (sequence classification).
    #[default]
    LastStep,
    /// One prediction per step (sequence to sequence, e.g. a character language model).
    EveryStep,
}

/// Configuration of [`RecurrentNet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecurrentConfig {
    /// Default LSTM.
    pub cell: CellKind,
    /// Hidden units per layer. Default 64.
    pub hidden: usize,
    /// Stacked layers. Default 1.
    pub layers: usize,
    /// The norm of every slot. For batch norm, `per_step = T` gives each of the first `T` steps
    /// its own statistics; left out, statistics are shared over time. Default none.
    pub norm: NormConfig,
    /// Default horizontal.
    pub placement: Placement,
    /// Default one prediction per sequence.
    pub output: SequenceOutput,
    /// Dropout probability between stacked layers and before the head. Default 0.
    pub dropout: f64,
    /// Multiplies the default weight init. Default 1.
    pub init_scale: f64,
    /// How `Wh` and `Wx` start. Default burn's default.
    pub weight_init: RecurrentInit,
}

impl Default for RecurrentConfig {
    fn default() -> Self {
        Self {
            cell: CellKind::default(),
            hidden: 64,
            layers: 1,
            norm: NormConfig::None,
            placement: Placement::default(),
            output: SequenceOutput::default(),
            dropout: 0.0,
            init_scale: 1.0,
            weight_init: RecurrentInit::Default,
        }
    }
}

impl RecurrentConfig {
    /// Checks what is wrong whatever the data: no layer, no hidden unit, or a norm that is an
    /// activation of its own.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.layers == 0 || self.hidden == 0 {
            return Err(ModelError::InvalidConfig {
                field: if self.layers == 0 { "layers" } else { "hidden" },
                message: "must be at least 1".into(),
            });
        }
        if self.placement == Placement::Sum && self.cell == CellKind::Gru {
            return Err(ModelError::InvalidConfig {
                field: "placement",
                message: "`sum` normalizes `Wx x + Wh h`, which a GRU's candidate never forms \
                          (its reset gate scales `Wh h` alone): use horizontal"
                    .into(),
            });
        }
        if self.norm.includes_activation() {
            return Err(ModelError::InvalidConfig {
                field: "norm",
                message: format!(
                    "`{}` is an activation of its own, made for conv and dense layers; a \
                     recurrent cell's gates need their sigmoid and tanh",
                    self.norm.kind()
                ),
            });
        }
        Ok(())
    }

    /// Builds the network for sequences of `features` per step and `outputs` logits.
    pub fn init(
        &self,
        features: usize,
        outputs: usize,
        device: &Device,
    ) -> Result<RecurrentNet, ModelError> {
        self.validate()?;
        let layers = (0..self.layers)
            .map(|i| {
                let inputs = if i == 0 { features } else { self.hidden };
                self.layer(i, inputs, &self.norm, device)
            })
            .collect::<Result<_, _>>()?;
        Ok(RecurrentNet {
            layers,
            dropout: DropoutConfig::new(self.dropout).init(),
            head: linear(self.hidden, outputs, self.init_scale, device),
            output: self.output,
        })
    }

    fn layer(
        &self,
        index: usize,
        inputs: usize,
        norm: &NormConfig,
        device: &Device,
    ) -> Result<RecurrentLayer, ModelError> {
        let (hidden, width) = (self.hidden, self.hidden * self.cell.gates());
        let name = format!("{:?} layer {}", self.cell, index + 1);
        let norm_of = |features, slot: &str| {
            norm.init(features, device)
                .map_err(ModelError::norm(|| format!("{name} {slot}")))
        };
        let horizontal = self.placement == Placement::Horizontal;
        let weights = |inputs| {
            LinearConfig::new(inputs, width)
                .with_bias(false)
                .with_initializer(scaled_kaiming(self.init_scale))
                .init(device)
        };
        let (mut input, mut recurrent) = (weights(inputs), weights(hidden));
        if self.weight_init == RecurrentInit::IdentityOrthogonal {
            input.weight = Param::from_tensor(orthogonal(input.weight.val()));
            recurrent.weight = Param::from_tensor(identities(hidden, self.cell.gates(), device));
        }
        Ok(RecurrentLayer {
            input,
            recurrent,
            bias: Param::from_tensor(Tensor::zeros([width], device)),
            input_norm: norm_of(width, INPUT_TERM)?,
            recurrent_norm: horizontal
                .then(|| norm_of(width, "recurrent term"))
                .transpose()?,
            cell_norm: (horizontal && self.cell == CellKind::Lstm)
                .then(|| norm_of(hidden, "cell"))
                .transpose()?,
            cell: self.cell,
            cell_kernels: Kernels::default(),
            placement: self.placement,
            hidden,
            name,
        })
    }
}

/// `Wh` as `gates` identity matrices side by side, `[hidden, gates * hidden]`.
fn identities(hidden: usize, gates: usize, device: &Device) -> Tensor<2> {
    let eye = Tensor::<2>::eye(hidden, device);
    Tensor::cat(vec![eye; gates], 1)
}

/// A (semi-)orthogonal matrix of `random`'s shape, from its values: Gram-Schmidt over its rows
/// when it has no more rows than columns (then `W W^T = I`), else over its columns.
fn orthogonal(random: Tensor<2>) -> Tensor<2> {
    let [rows, columns] = random.dims();
    let device = random.device();
    let values: Vec<f64> = random.into_data().iter::<f64>().collect();
    let transpose = rows > columns;
    let (count, length) = if transpose {
        (columns, rows)
    } else {
        (rows, columns)
    };
    let vector = |k: usize| -> Vec<f64> {
        (0..length)
            .map(|i| match transpose {
                true => values[i * columns + k],
                false => values[k * columns + i],
            })
            .collect()
    };
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(count);
    for k in 0..count {
        let mut v = vector(k);
        for b in &basis {
            let dot: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
            v.iter_mut().zip(b).for_each(|(x, y)| *x -= dot * y);
        }
        let norm = v
            .iter()
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt()
            .max(f64::MIN_POSITIVE);
        v.iter_mut().for_each(|x| *x /= norm);
        basis.push(v);
    }
    let out: Vec<f32> = (0..rows * columns)
        .map(|at| {
            let (i, j) = (at / columns, at % columns);
            (match transpose {
                true => basis[j][i],
                false => basis[i][j],
            }) as f32
        })
        .collect();
    Tensor::from_data(TensorData::new(out, [rows, columns]), &device)
}

/// The site name of the norm on `Wx x_t`.
const INPUT_TERM: &str = "input term";

/// The site name of the norm on `Wx x_t + Wh h_{t-1}` (the sum placement).
const SUM: &str = "pre-activation";

/// One recurrent layer, batch-first, written as a step function so norms can sit inside it.
#[derive(Module, Debug)]
pub struct RecurrentLayer {
    /// `Wx`, `[inputs] -> [gates * hidden]`, no bias.
    pub input: Linear,
    /// `Wh`, `[hidden] -> [gates * hidden]`, no bias.
    pub recurrent: Linear,
    /// One bias after the norms, so a norm's `beta` and the bias do not double up.
    pub bias: Param<Tensor<1>>,
    /// On `Wx x`: over the whole sequence (vertical) or at each step (horizontal).
    pub input_norm: Norm,
    /// On `Wh h` at each step (horizontal only).
    pub recurrent_norm: Option<Norm>,
    /// On the LSTM cell state before its `tanh` (horizontal only).
    pub cell_norm: Option<Norm>,
    /// Which cell the step computes.
    #[module(skip)]
    pub cell: CellKind,
    /// How the LSTM cell's element-wise half runs: normlab's fused ops on flex (the default) or
    /// burn's composed ops. Both give the same bits.
    #[module(skip)]
    pub cell_kernels: Kernels,
    /// Where its norms sit.
    #[module(skip)]
    pub placement: Placement,
    /// Hidden units.
    pub hidden: usize,
    /// `Lstm layer 1`: the start of each norm site's name in errors and probes.
    pub name: String,
}

impl RecurrentLayer {
    /// The name of one norm site of this layer: `Lstm layer 1 input term`.
    fn site(&self, slot: &str) -> String {
        format!("{} {slot}", self.name)
    }

    /// `x: [N, T, inputs]`, `mask: [N, T]` -> hidden states `[N, T, hidden]`. At padded steps
    /// the state carries over unchanged, so the last step holds each sequence's final state.
    /// `instruments` measure its vertical norm and tap its hidden states.
    pub fn forward(
        &self,
        x: Tensor<3>,
        mask: Option<Tensor<2, Bool>>,
        instruments: &mut Instruments,
    ) -> Result<Tensor<3>, ModelError> {
        let [n, steps, _] = x.dims();
        let device = x.device();
        let mut terms = self.input.forward(x);
        if self.placement == Placement::Vertical {
            let site = || self.site(INPUT_TERM);
            terms = instruments
                .norm_site(site, 2, terms, |t| {
                    self.input_norm.forward_sequence(t, mask.clone())
                })
                .map_err(ModelError::norm(site))?;
        }
        let mut h = Tensor::zeros([n, self.hidden], &device);
        let mut c = Tensor::zeros([n, self.hidden], &device);
        let mut states = Vec::with_capacity(steps);
        instruments.recurrent_layer_starts();
        // The batch norms fold their running statistics after the last step, each layer's in one
        // pass, instead of rewriting every slot at every step: the same bits.
        normlab_norm::fold_statistics_after(|| {
            for (t, x_term) in time_steps(terms).into_iter().enumerate() {
                let running = mask
                    .as_ref()
                    .map(|m| m.clone().slice(s![.., t]).squeeze_dim::<1>(1));
                let (h_new, c_new) = self.step(x_term, h.clone(), c.clone(), t, running.clone())?;
                (h, c) = match running {
                    Some(running) => {
                        let running = running.unsqueeze_dim::<2>(1).expand([n, self.hidden]);
                        (
                            h.mask_where(running.clone(), h_new),
                            c.mask_where(running, c_new),
                        )
                    }
                    None => (h_new, c_new),
                };
                h = instruments.hidden_state(h);
                states.push(h.clone());
            }
            Ok::<_, ModelError>(())
        })?;
        Ok(Tensor::stack(states, 1))
    }

    /// One step: `x_term = Wx x_t: [N, gates * hidden]`, state `h, c: [N, hidden]`.
    fn step(
        &self,
        x_term: Tensor<2>,
        h: Tensor<2>,
        c: Tensor<2>,
        t: usize,
        running: Option<Tensor<1, Bool>>,
    ) -> Result<(Tensor<2>, Tensor<2>), ModelError> {
        let normalize = |norm: &Norm, slot: &'static str, x: Tensor<2>| {
            norm.forward_step(x, t, running.clone())
                .map_err(ModelError::norm(|| self.site(slot)))
        };
        let mut h_term = self.recurrent.forward(h.clone());
        let mut x_term = x_term;
        if let Some(recurrent_norm) = &self.recurrent_norm {
            x_term = normalize(&self.input_norm, INPUT_TERM, x_term)?;
            h_term = normalize(recurrent_norm, "recurrent term", h_term)?;
        }
        let bias = self.bias.val().unsqueeze_dim::<2>(0);
        // The RNN's and the LSTM's pre-activation; normalized whole with the sum placement.
        let summed = || match self.placement {
            Placement::Sum => normalize(&self.input_norm, SUM, x_term.clone() + h_term.clone()),
            _ => Ok(x_term.clone() + h_term.clone()),
        };
        Ok(match self.cell {
            CellKind::Rnn => (tanh(summed()? + bias), c),
            CellKind::Lstm => {
                let gates = summed()? + bias;
                let c = lstm_cell::cell_state(gates.clone(), c, self.cell_kernels);
                let c_out = match &self.cell_norm {
                    Some(norm) => normalize(norm, "cell", c.clone())?,
                    None => c.clone(),
                };
                (lstm_cell::output(gates, c_out, self.cell_kernels), c)
            }
            CellKind::Gru => {
                let chunks =
                    |t: Tensor<2>| -> [Tensor<2>; 3] { t.chunk(3, 1).try_into().expect("3 gates") };
                let [xr, xz, xn] = chunks(x_term);
                let [hr, hz, hn] = chunks(h_term);
                let [br, bz, bn] = chunks(bias);
                let r = sigmoid(xr + hr + br);
                let z = sigmoid(xz + hz + bz);
                let candidate = tanh(xn + bn + r * hn);
                (z.clone() * h + (z.neg() + 1.0) * candidate, c)
            }
        })
    }
}

/// Stacked recurrent layers and a linear head.
#[derive(Module, Debug)]
pub struct RecurrentNet {
    /// The stacked layers, input first.
    pub layers: Vec<RecurrentLayer>,
    /// Between layers and before the head.
    pub dropout: Dropout,
    /// The linear layer that gives the logits.
    pub head: Linear,
    /// One prediction per sequence or per step.
    #[module(skip)]
    pub output: SequenceOutput,
}

/// `(x: [N, T, features], mask: [N, T])` (true = real step; `None`: every step is) -> logits
/// `[N, outputs]` (last step) or `[N * T, outputs]` (every step, row `n * T + t`).
impl Network<(Tensor<3>, Option<Tensor<2, Bool>>)> for RecurrentNet {
    fn forward_instrumented(
        &self,
        (x, mask): (Tensor<3>, Option<Tensor<2, Bool>>),
        instruments: &mut Instruments,
    ) -> Result<Tensor<2>, ModelError> {
        ModelError::check_not_empty(&x.dims())?;
        let mut states = x;
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                states = self.dropout.forward(states);
            }
            states = layer.forward(states, mask.clone(), instruments)?;
        }
        let [n, steps, hidden] = states.dims();
        let features = match self.output {
            SequenceOutput::LastStep => states.slice(s![.., steps - 1, ..]).reshape([n, hidden]),
            SequenceOutput::EveryStep => states.reshape([n * steps, hidden]),
        };
        Ok(self.head.forward(self.dropout.forward(features)))
    }
}
