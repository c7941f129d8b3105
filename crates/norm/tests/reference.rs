//! Every family x layout x option against reference values: PyTorch's layers where it has them
//! (`reference/torch_reference.json`), float64 implementations written from the papers' equations
//! where it does not (`reference/remedies_reference.json`); `reference/generate.py` made both.

mod common;

use burn::prelude::*;
use burn::tensor::Gradients;
use std::collections::BTreeMap;

use normlab_norm::{Affine, Norm, NormConfig, NormLayer, standardize_weights};
use serde::Deserialize;

use common::*;

/// f32 through a normalization and its backward: PyTorch and burn sum in different orders.
const TOLERANCE: f32 = 2e-5;

#[derive(Deserialize)]
struct Reference {
    torch_version: String,
    cases: Vec<Case>,
    #[serde(default)]
    weight_standardization: Vec<WeightCase>,
}

#[derive(Deserialize)]
struct WeightCase {
    name: String,
    shape: Vec<usize>,
    axis: usize,
    epsilon: f64,
    weight: Vec<f32>,
    grad_output: Vec<f32>,
    output: Vec<f32>,
    grad_weight: Vec<f32>,
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
    /// For families whose state changes in the backward pass (Online Normalization): the output
    /// gradient of each training step but the last, whose backward runs too.
    #[serde(default)]
    train_grad_outputs: Vec<Vec<f32>>,
    grad_output: Vec<f32>,
    output: Vec<f32>,
    grad_input: Vec<f32>,
    grad_gamma: Option<Vec<f32>>,
    grad_beta: Option<Vec<f32>>,
    /// The gradients of the family's own parameters, by name.
    #[serde(default)]
    grad_params: BTreeMap<String, Vec<f32>>,
    running_mean: Option<Vec<f32>>,
    running_var: Option<Vec<f32>>,
    eval_input: Vec<f32>,
    eval_output: Vec<f32>,
}

fn load(file: &str) -> Reference {
    let path = format!("{}/tests/reference/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("reference file is committed");
    serde_json::from_str(&text).expect("reference file parses")
}

/// A family's own parameter by the name the reference gives it.
fn own_parameter(norm: &Norm, name: &str) -> Option<Tensor<1>> {
    match (norm, name) {
        (Norm::Frn(l), "tau") => Some(l.tau()),
        (Norm::Frn(l), "epsilon") => l.learned_epsilon(),
        (Norm::EvoNormS0(l), "v") => Some(l.v()),
        (Norm::EvoNormB0(l), "v") => Some(l.v()),
        _ => None,
    }
}

fn running_stats(norm: &Norm) -> Option<(Vec<f32>, Vec<f32>)> {
    let running = norm.running_stats()?;
    Some((values(running.mean()), values(running.var())))
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

/// `out` is `output`, and the gradient of `Σ out * grad_output` with respect to `input` (named
/// `what`) is `want_grad`. Returns the gradients, for the parameters' checks.
fn check_output_and_grad(
    name: &str,
    out: Tensor<1>,
    (output, grad_output): (&[f32], &[f32]),
    (input, what, want_grad): (&Tensor<1>, &str, &[f32]),
) -> Gradients {
    assert_close(
        &format!("{name} output"),
        &values(out.clone()),
        output,
        TOLERANCE,
    );
    let device = out.device();
    let grads = (out * flat(grad_output, &device)).sum().backward();
    let got = values(input.grad(&grads).expect("a gradient"));
    assert_close(&format!("{name} grad {what}"), &got, want_grad, TOLERANCE);
    grads
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
    if let (Some(_), Some(gamma), Some(beta)) = (norm.affine(), &case.gamma, &case.beta) {
        let gamma = flat(gamma, &device).require_grad();
        let beta = flat(beta, &device).require_grad();
        norm.set_affine(Some(Affine::new(gamma, beta).unwrap()))
            .unwrap();
    }

    let (last, earlier) = case.train_inputs.split_last().unwrap();
    for (step, input) in earlier.iter().enumerate() {
        let out = apply(
            &norm,
            sequence,
            flat(input, &device).require_grad(),
            &case.shape,
            case.lengths.as_ref(),
        );
        if let Some(grad_output) = case.train_grad_outputs.get(step) {
            let _ = (out * flat(grad_output, &device)).sum().backward();
        }
    }
    let x = flat(last, &device).require_grad();
    let out = apply(
        &norm,
        sequence,
        x.clone(),
        &case.shape,
        case.lengths.as_ref(),
    );
    let want_output = (case.output.as_slice(), case.grad_output.as_slice());
    let grads = check_output_and_grad(name, out, want_output, (&x, "input", &case.grad_input));
    if let (Some(affine), Some(g_gamma), Some(g_beta)) =
        (norm.affine(), &case.grad_gamma, &case.grad_beta)
    {
        let got_gamma = values(affine.gamma().grad(&grads).expect("gamma gradient"));
        let got_beta = values(affine.beta().grad(&grads).expect("beta gradient"));
        assert_close(
            &format!("{name} grad gamma"),
            &got_gamma,
            g_gamma,
            TOLERANCE,
        );
        assert_close(&format!("{name} grad beta"), &got_beta, g_beta, TOLERANCE);
    }
    for (param, expected) in &case.grad_params {
        let tensor = own_parameter(&norm, param).unwrap_or_else(|| panic!("{name}: no {param}"));
        let got = values(tensor.grad(&grads).expect("parameter gradient"));
        assert_close(&format!("{name} grad {param}"), &got, expected, TOLERANCE);
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
    let reference = load("torch_reference.json");
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

#[test]
fn every_remedy_matches_its_float64_reference() {
    let reference = load("remedies_reference.json");
    let kinds: std::collections::BTreeSet<&str> = reference
        .cases
        .iter()
        .map(|case| case.config.kind())
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "batch",
            "batch_renorm",
            "evonorm_b0",
            "evonorm_s0",
            "frn",
            "online"
        ],
        "every remedy family has reference cases"
    );
    assert!(reference.cases.len() >= 40, "reference file lost cases");
    for case in &reference.cases {
        check_case(case);
    }
}

#[test]
fn weight_standardization_matches_its_float64_reference() {
    let reference = load("remedies_reference.json");
    assert_eq!(reference.weight_standardization.len(), 2);
    let device = train_device();
    for case in &reference.weight_standardization {
        let name = &case.name;
        let weight = flat(&case.weight, &device).require_grad();
        let standardize = |w: Tensor<1>| match case.shape[..] {
            [a, b] => standardize_weights(w.reshape([a, b]), case.axis, case.epsilon).reshape([-1]),
            [a, b, c, d] => {
                standardize_weights(w.reshape([a, b, c, d]), case.axis, case.epsilon).reshape([-1])
            }
            _ => panic!("{name}: unexpected shape"),
        };
        let out = standardize(weight.clone());
        let want_output = (case.output.as_slice(), case.grad_output.as_slice());
        check_output_and_grad(
            name,
            out,
            want_output,
            (&weight, "weight", &case.grad_weight),
        );
    }
}
