//! Every family x layout x option against values PyTorch computed (see `reference/generate.py`).

mod common;

use burn::module::Param;
use burn::prelude::*;
use normlab_norm::{Affine, Norm, NormConfig, NormLayer};
use serde::Deserialize;

use common::*;

/// f32 through a normalization and its backward: PyTorch and burn sum in different orders.
const TOLERANCE: f32 = 2e-5;

#[derive(Deserialize)]
struct Reference {
    torch_version: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    config: NormConfig,
    layout: String,
    shape: Vec<usize>,
    eval_shape: Vec<usize>,
    lengths: Option<Vec<usize>>,
    eval_lengths: Option<Vec<usize>>,
    gamma: Option<Vec<f32>>,
    beta: Option<Vec<f32>>,
    train_inputs: Vec<Vec<f32>>,
    grad_output: Vec<f32>,
    output: Vec<f32>,
    grad_input: Vec<f32>,
    grad_gamma: Option<Vec<f32>>,
    grad_beta: Option<Vec<f32>>,
    running_mean: Option<Vec<f32>>,
    running_var: Option<Vec<f32>>,
    eval_input: Vec<f32>,
    eval_output: Vec<f32>,
}

fn load() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/torch_reference.json"
    );
    let text = std::fs::read_to_string(path).expect("reference file is committed");
    serde_json::from_str(&text).expect("reference file parses")
}

fn running_stats(norm: &Norm) -> Option<(Vec<f32>, Vec<f32>)> {
    let running = match norm {
        Norm::Batch(l) => l.running.as_ref(),
        Norm::Instance(l) => l.running.as_ref(),
        _ => None,
    }?;
    Some((
        values(running.mean.value_sync()),
        values(running.var.value_sync()),
    ))
}

/// Applies `norm` to the flat `x` laid out as `shape` (a sequence when `lengths` is given or the
/// case says so) and returns the output flattened again.
fn apply(
    norm: &Norm,
    sequence: bool,
    x: Tensor<1>,
    shape: &[usize],
    lengths: Option<&Vec<usize>>,
) -> Tensor<1> {
    let len = x.dims()[0];
    let device = x.device();
    let out = match (sequence, shape) {
        (true, &[n, t, f]) => {
            let mask = lengths.map(|l| prefix_mask(l, t, &device));
            norm.forward_sequence(x.reshape([n, t, f]), mask)
                .map(|y| y.reshape([len]))
        }
        (false, &[a, b]) => norm.forward(x.reshape([a, b])).map(|y| y.reshape([len])),
        (false, &[a, b, c]) => norm.forward(x.reshape([a, b, c])).map(|y| y.reshape([len])),
        (false, &[a, b, c, d]) => norm
            .forward(x.reshape([a, b, c, d]))
            .map(|y| y.reshape([len])),
        (false, &[a, b, c, d, e]) => norm
            .forward(x.reshape([a, b, c, d, e]))
            .map(|y| y.reshape([len])),
        other => panic!("unknown layout {other:?}"),
    };
    out.unwrap_or_else(|e| panic!("{e}"))
}

fn flat(values: &[f32], device: &Device) -> Tensor<1> {
    tensor(values, [values.len()], device)
}

fn check_case(case: &Case) {
    let name = &case.name;
    let device = train_device();
    let sequence = case.layout == "sequence";
    let features = case.shape[if sequence { 2 } else { 1 }];
    let mut norm = case
        .config
        .init(features, &device)
        .expect("config is valid");
    if let (Some(affine), Some(gamma), Some(beta)) = (norm.affine_mut(), &case.gamma, &case.beta) {
        *affine = Some(Affine {
            gamma: Param::from_tensor(flat(gamma, &device).require_grad()),
            beta: Param::from_tensor(flat(beta, &device).require_grad()),
        });
    }

    let (last, earlier) = case.train_inputs.split_last().unwrap();
    for input in earlier {
        apply(
            &norm,
            sequence,
            flat(input, &device),
            &case.shape,
            case.lengths.as_ref(),
        );
    }
    let x = flat(last, &device).require_grad();
    let out = apply(
        &norm,
        sequence,
        x.clone(),
        &case.shape,
        case.lengths.as_ref(),
    );
    assert_close(
        &format!("{name} output"),
        &values(out.clone()),
        &case.output,
        TOLERANCE,
    );

    let grads = (out * flat(&case.grad_output, &device)).sum().backward();
    let grad_input = values(x.grad(&grads).expect("input gradient"));
    assert_close(
        &format!("{name} grad input"),
        &grad_input,
        &case.grad_input,
        TOLERANCE,
    );
    if let (Some(Some(affine)), Some(g_gamma), Some(g_beta)) =
        (norm.affine_mut(), &case.grad_gamma, &case.grad_beta)
    {
        let got_gamma = values(affine.gamma.grad(&grads).expect("gamma gradient"));
        let got_beta = values(affine.beta.grad(&grads).expect("beta gradient"));
        assert_close(
            &format!("{name} grad gamma"),
            &got_gamma,
            g_gamma,
            TOLERANCE,
        );
        assert_close(&format!("{name} grad beta"), &got_beta, g_beta, TOLERANCE);
    }

    match (running_stats(&norm), &case.running_mean, &case.running_var) {
        (Some((mean, var)), Some(want_mean), Some(want_var)) => {
            assert_close(&format!("{name} running mean"), &mean, want_mean, TOLERANCE);
            assert_close(&format!("{name} running var"), &var, want_var, TOLERANCE);
        }
        (None, None, None) => {}
        (got, _, _) => panic!("{name}: running statistics present = {}", got.is_some()),
    }

    let eval = norm.valid();
    let eval_out = apply(
        &eval,
        sequence,
        flat(&case.eval_input, &common::device()),
        &case.eval_shape,
        case.eval_lengths.as_ref(),
    );
    assert_close(
        &format!("{name} eval output"),
        &values(eval_out),
        &case.eval_output,
        TOLERANCE,
    );
}

#[test]
fn every_case_matches_pytorch() {
    let reference = load();
    assert!(reference.cases.len() >= 60, "reference file lost cases");
    eprintln!(
        "{} cases from torch {}",
        reference.cases.len(),
        reference.torch_version
    );
    for case in &reference.cases {
        check_case(case);
    }
}
