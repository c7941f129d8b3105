//! One BN-LSTM layer (batch norm per time step on the input term, the recurrent term and the
//! cell state, gamma 0.1) against float64 values written from recurrent batch norm's equations
//! (`tests/reference/bn_lstm.py` made `tests/reference/bn_lstm.json`): the hidden states and
//! the gradients of the input, both weight matrices and the bias in training, and the hidden
//! states in evaluation with the running statistics that one training pass left. The norm
//! layers have their own reference tests; this one checks how the cell wires them.

use burn::module::Param;
use burn::prelude::*;
use normlab_model::{CellKind, Instruments, Placement, RecurrentConfig};
use normlab_norm::NormConfig;
use normlab_testkit::{assert_close, to_vec, train_device, values};
use serde_json::Value;

/// Float64 reference against f32 arithmetic over four steps of a recurrence.
const TOLERANCE: f32 = 1e-5;

fn reference() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/bn_lstm.json");
    let text = std::fs::read_to_string(path).expect("the reference file is committed");
    serde_json::from_str(&text).expect("the reference file parses")
}

fn numbers(reference: &Value, key: &str) -> Vec<f32> {
    let list = reference[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in the reference"));
    list.iter()
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect()
}

#[test]
fn a_bn_lstm_layer_matches_the_papers_equations_in_float64() {
    let reference = reference();
    let size = |key: &str| reference["shape"][key].as_u64().expect("a size") as usize;
    let [n, steps, features, hidden] = ["batch", "steps", "features", "hidden"].map(size);
    let device = train_device();
    let norm: NormConfig = toml::from_str(&format!(
        "kind = \"batch\"\nper_step = {steps}\ngamma_init = 0.1"
    ))
    .expect("a batch norm config");
    let config = RecurrentConfig {
        cell: CellKind::Lstm,
        hidden,
        layers: 1,
        norm,
        placement: Placement::Horizontal,
        ..RecurrentConfig::default()
    };
    let mut layer = config.init(features, 2, &device).expect("a BN-LSTM").layers[0].clone();
    let gates = 4 * hidden;
    layer.input.weight = Param::from_tensor(values([features, gates], 1, &device));
    layer.recurrent.weight = Param::from_tensor(values([hidden, gates], 2, &device));
    layer.bias = Param::from_tensor(values([gates], 3, &device));

    let x = values([n, steps, features], 4, &device).require_grad();
    let states = layer
        .forward(x.clone(), None, &mut Instruments::none())
        .expect("a training pass");
    let loss_weights = values([n, steps, hidden], 5, &device);
    let grads = (states.clone() * loss_weights).sum().backward();
    let grad_of = |t: Tensor<2>| t.grad(&grads).expect("a gradient").reshape([-1]);
    let dx = x.grad(&grads).expect("the input's gradient").reshape([-1]);
    let dbias = layer.bias.val().grad(&grads).expect("the bias's gradient");
    let trained = [
        ("train_states", states.reshape([-1])),
        ("grad_input", dx),
        ("grad_input_weight", grad_of(layer.input.weight.val())),
        (
            "grad_recurrent_weight",
            grad_of(layer.recurrent.weight.val()),
        ),
        ("grad_bias", dbias),
    ];
    for (key, got) in trained {
        assert_close(key, &to_vec(got), &numbers(&reference, key), TOLERANCE);
    }

    let eval_layer = layer.valid();
    let eval_input = values([n, steps, features], 6, &eval_layer.input.weight.device());
    let eval_states = eval_layer
        .forward(eval_input, None, &mut Instruments::none())
        .expect("an evaluation pass");
    let want = numbers(&reference, "eval_states");
    assert_close(
        "eval_states",
        &to_vec(eval_states.reshape([-1])),
        &want,
        TOLERANCE,
    );
}
