//! The LSTM layer with normlab's fused cell (the default on flex) against the same layer with
//! burn's composed ops: the same bits in the hidden states and in the gradient of every
//! parameter and of the input, with and without norms inside the recurrence and with padded
//! sequences. The cell's own test compares one step; this one also covers the gradients that
//! sum over time steps (the bias, the norms' gamma and beta), whose order of summation follows
//! autodiff's walk of the graph, which the fused ops must leave as it was. Without it the
//! experiments' records would change with the path.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::Gradients;
use normlab_model::{CellKind, Instruments, Placement, RecurrentConfig, RecurrentLayer};
use normlab_norm::{Kernels, NormConfig};
use normlab_testkit::{mask, to_vec, train_device, values};

/// Collects every float parameter's gradient, flattened, in the module's order.
struct ParamGradients<'a> {
    grads: &'a Gradients,
    found: Vec<Vec<f32>>,
}

impl ModuleVisitor for ParamGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = param.val().grad(self.grads) {
            self.found.push(to_vec(grad));
        }
    }
}

/// The layer's hidden states, the input's gradient and every parameter's gradient, as bits.
fn run(layer: &RecurrentLayer, lengths: Option<&[usize]>) -> Vec<Vec<u32>> {
    let device = train_device();
    let (n, steps, features) = (4, 6, 3);
    let x = values([n, steps, features], 4, &device).require_grad();
    let mask = lengths.map(|l| mask(l, steps, &device));
    let states = layer
        .forward(x.clone(), mask, &mut Instruments::none())
        .expect("a training pass");
    let hidden = states.dims()[2];
    let loss_weights = values([n, steps, hidden], 5, &device);
    let grads = (states.clone() * loss_weights).sum().backward();
    let mut visitor = ParamGradients {
        grads: &grads,
        found: Vec::new(),
    };
    layer.visit(&mut visitor);
    let mut found = vec![
        to_vec(states.reshape([-1])),
        to_vec(x.grad(&grads).expect("the input's gradient").reshape([-1])),
    ];
    found.extend(visitor.found);
    found
        .into_iter()
        .map(|v| v.iter().map(|x| x.to_bits()).collect())
        .collect()
}

#[test]
fn the_fused_cell_gives_the_composed_layers_bits() {
    let device = train_device();
    let norms = [
        "kind = \"none\"",
        "kind = \"layer\"",
        "kind = \"batch\"\nper_step = 6\ngamma_init = 0.1",
        "kind = \"batch\"\ngamma_init = 0.1",
    ];
    for norm in norms {
        for placement in [Placement::Horizontal, Placement::Vertical, Placement::Sum] {
            for lengths in [None, Some(&[6, 4, 5, 6][..])] {
                let config = RecurrentConfig {
                    cell: CellKind::Lstm,
                    hidden: 5,
                    layers: 1,
                    norm: toml::from_str::<NormConfig>(norm).expect("a norm config"),
                    placement,
                    ..RecurrentConfig::default()
                };
                let mut layer = config.init(3, 2, &device).expect("an LSTM").layers[0].clone();
                layer.bias = Param::from_tensor(values([20], 3, &device));
                let fused = run(&layer, lengths);
                layer.cell_kernels = Kernels::Composed;
                let composed = run(&layer, lengths);
                let case = format!("{norm:?}, {placement:?}, lengths {lengths:?}");
                assert_eq!(fused.len(), composed.len(), "{case}: gradients found");
                for (k, (got, want)) in fused.iter().zip(&composed).enumerate() {
                    let differ = got.iter().zip(want).filter(|(a, b)| a != b).count();
                    assert!(
                        differ == 0,
                        "{case}: {differ} of {} values of result {k} differ from the composed \
                         layer's bits",
                        got.len()
                    );
                }
            }
        }
    }
}
