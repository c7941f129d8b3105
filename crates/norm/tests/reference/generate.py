#!/usr/bin/env python3
"""Writes PyTorch reference values for the norm crate's tests to torch_reference.json.

Run once by a developer when cases change (the tests read the committed JSON and need no Python).
It also writes remedies_reference.json, from remedies.py: the remedies for batch norm's failures,
which PyTorch does not have, written op by op from their papers' equations in float64.

    python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch numpy
    /tmp/torch-venv/bin/python crates/norm/tests/reference/generate.py

Each case names a normlab `NormConfig` (as JSON), an input layout and shape, and records what
PyTorch computes for: the output of the last of several training steps, the gradients of
`sum(output * grad_output)` with respect to the input, gamma and beta, the running statistics
after all steps, and the eval-mode output on a further input. Sequences and padding masks have no
PyTorch layer, so they are built from PyTorch's functional ops on the real steps only.
"""

import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

torch.use_deterministic_algorithms(True)
FEATURES = 6
TRAIN_STEPS = 3
RNG = np.random.RandomState(20261123)


def tensor(shape, scale=2.0, offset=0.5):
    return torch.tensor(RNG.randn(*shape) * scale + offset, dtype=torch.float32)


def flat(t):
    return None if t is None else [float(v) for v in t.detach().reshape(-1).tolist()]


def momentum_arg(cfg):
    m = cfg.get("momentum", 0.1)
    return None if m == "cumulative" else m


class Case:
    """The state one reference case carries across its training steps."""

    def __init__(self, cfg, seq_len_eval=None):
        self.cfg = cfg
        kind = cfg["kind"]
        self.eps = cfg.get("epsilon", 1.1920928955078125e-07 if kind == "rms" else 1e-5)
        default_affine = kind != "instance"
        self.affine = cfg.get("affine", default_affine) and kind != "none"
        self.gamma = (tensor([FEATURES], 0.5, 1.0).requires_grad_() if self.affine else None)
        self.beta = tensor([FEATURES], 0.5, 0.0).requires_grad_() if self.affine else None
        tracked = {"batch": True, "instance": False}.get(kind, False)
        self.track = cfg.get("track_running_stats", tracked)
        slots = cfg.get("per_step") or 1
        self.running_mean = torch.zeros(slots, FEATURES) if self.track else None
        self.running_var = torch.ones(slots, FEATURES) if self.track else None
        self.batches = [0] * slots

    def affine_channels(self, x_hat, channel_dim):
        if not self.affine:
            return x_hat
        shape = [1] * x_hat.dim()
        shape[channel_dim] = FEATURES
        return x_hat * self.gamma.view(shape) + self.beta.view(shape)

    def batch_norm(self, x, slot, training):
        """Batch norm of x: [M, F, ...] with the statistics of one slot."""
        if self.track:
            m = momentum_arg(self.cfg)
            if training:
                self.batches[slot] += 1
                if m is None:
                    m = 1.0 / self.batches[slot]
            rm, rv = self.running_mean[slot].clone(), self.running_var[slot].clone()
            out = F.batch_norm(x, rm, rv, self.gamma, self.beta, training, m or 0.0, self.eps)
            self.running_mean[slot], self.running_var[slot] = rm, rv
            return out
        return F.batch_norm(x, None, None, self.gamma, self.beta, True, 0.0, self.eps)

    def trained_slot(self, t):
        trained = max([i for i, b in enumerate(self.batches) if b > 0] or [0])
        return min(t, trained)


def channels_forward(case, x, training):
    kind, cfg = case.cfg["kind"], case.cfg
    if kind == "none":
        return x
    if kind == "batch":
        return case.batch_norm(x, 0, training)
    if kind == "instance":
        use_input_stats = training or not case.track
        rm = case.running_mean[0] if case.track else None
        rv = case.running_var[0] if case.track else None
        out = F.instance_norm(x, rm, rv, None, None, use_input_stats, momentum_arg(cfg) or 0.0,
                              case.eps)
        return case.affine_channels(out, 1)
    if kind == "group":
        return F.group_norm(x, cfg["groups"], case.gamma, case.beta, case.eps)
    if kind == "layer":
        return case.affine_channels(F.layer_norm(x, x.shape[1:], eps=case.eps), 1)
    if kind == "rms":
        return case.affine_channels(F.rms_norm(x, x.shape[1:], eps=case.eps), 1)
    raise ValueError(kind)


def sequence_forward(case, x, mask, training):
    """x: [N, T, F], mask: [N, T] bool."""
    kind, cfg = case.cfg["kind"], case.cfg
    n, t, _ = x.shape
    if kind == "none":
        out = x
    elif kind in ("layer", "rms"):
        op = F.layer_norm if kind == "layer" else F.rms_norm
        out = case.affine_channels(op(x, (FEATURES,), eps=case.eps), 2)
    elif kind == "batch" and not cfg.get("per_step"):
        real = x[mask]  # [M, F]
        out = torch.zeros_like(x).index_put((mask,), case.batch_norm(real, 0, training))
    elif kind == "batch":
        steps = []
        for step in range(t):
            running = mask[:, step]
            slot = step if training else case.trained_slot(step)
            y = torch.zeros(n, FEATURES)
            if running.any():
                y = y.index_put((running,), case.batch_norm(x[running, step], slot, training))
            steps.append(y)
        out = torch.stack(steps, 1)
    else:  # instance, group: each sample over its real steps alone
        rows = []
        for i in range(n):
            real = x[i][mask[i]].T.unsqueeze(0)  # [1, F, len]
            y = channels_forward(case, real, training)[0].T
            rows.append(torch.zeros(t, FEATURES).index_put((mask[i],), y))
        out = torch.stack(rows, 0)
    return out * mask.unsqueeze(2)


def run_case(name, cfg, layout, shape, lengths=None, eval_shape=None):
    case = Case(cfg)
    eval_shape = eval_shape or shape
    record = {"name": name, "config": cfg, "layout": layout, "shape": shape,
              "eval_shape": eval_shape}

    def make_mask(n, t, lens):
        if lens is None:
            return torch.ones(n, t, dtype=torch.bool)
        return torch.arange(t).unsqueeze(0) < torch.tensor(lens).unsqueeze(1)

    mask = make_mask(shape[0], shape[1], lengths) if layout == "sequence" else None
    record["lengths"] = lengths
    record["gamma"] = flat(case.gamma)
    record["beta"] = flat(case.beta)
    steps = TRAIN_STEPS if case.track else 1
    record["train_inputs"] = []
    for step in range(steps):
        x = tensor(shape).requires_grad_()
        record["train_inputs"].append(flat(x))
        if layout == "sequence":
            out = sequence_forward(case, x, mask, True)
        else:
            out = channels_forward(case, x, True)
    grad_output = tensor(shape, 1.0, 0.0)
    record["grad_output"] = flat(grad_output)
    (out * grad_output).sum().backward()
    record["output"] = flat(out)
    record["grad_input"] = flat(x.grad)
    record["grad_gamma"] = flat(case.gamma.grad) if case.affine else None
    record["grad_beta"] = flat(case.beta.grad) if case.affine else None
    record["running_mean"] = flat(case.running_mean)
    record["running_var"] = flat(case.running_var)

    x_eval = tensor(eval_shape)
    record["eval_input"] = flat(x_eval)
    with torch.no_grad():
        if layout == "sequence":
            eval_lengths = None if lengths is None else [
                min(eval_shape[1], l + eval_shape[1] - shape[1]) for l in lengths]
            record["eval_lengths"] = eval_lengths
            y = sequence_forward(case, x_eval, make_mask(eval_shape[0], eval_shape[1], eval_lengths), False)
        else:
            y = channels_forward(case, x_eval, False)
    record["eval_output"] = flat(y)
    return record


def main():
    conv_shapes = {"dense": [5, FEATURES], "conv1d": [4, FEATURES, 5],
                   "conv2d": [3, FEATURES, 4, 5], "conv3d": [2, FEATURES, 3, 4, 2]}
    families = {
        "none": {"kind": "none"},
        "batch": {"kind": "batch"},
        "layer": {"kind": "layer"},
        "instance": {"kind": "instance", "affine": True},
        "group": {"kind": "group", "groups": 3},
        "rms": {"kind": "rms"},
    }
    cases = []
    for fam, cfg in families.items():
        for layout, shape in conv_shapes.items():
            if fam == "instance" and layout == "dense":
                continue  # one value per channel: an error, tested separately
            cases.append(run_case(f"{fam}_{layout}", cfg, "channels", shape))
        cases.append(run_case(f"{fam}_sequence", cfg, "sequence", [4, 5, FEATURES]))
        cases.append(run_case(f"{fam}_sequence_masked", cfg, "sequence", [4, 5, FEATURES],
                              lengths=[5, 3, 2, 5]))

    options = {
        "batch_momentum_0.3": {"kind": "batch", "momentum": 0.3},
        "batch_cumulative": {"kind": "batch", "momentum": "cumulative"},
        "batch_no_affine": {"kind": "batch", "affine": False},
        "batch_untracked": {"kind": "batch", "track_running_stats": False},
        "batch_eps_1e-3": {"kind": "batch", "epsilon": 1e-3},
        "layer_no_affine": {"kind": "layer", "affine": False},
        "instance_no_affine": {"kind": "instance"},
        "instance_tracked": {"kind": "instance", "affine": True, "track_running_stats": True},
        "group_1": {"kind": "group", "groups": 1},
        "group_2": {"kind": "group", "groups": 2},
        "group_6": {"kind": "group", "groups": 6},
        "group_no_affine": {"kind": "group", "groups": 3, "affine": False},
        "rms_no_affine": {"kind": "rms", "affine": False},
        "rms_eps_1e-5": {"kind": "rms", "epsilon": 1e-5},
    }
    for name, cfg in options.items():
        for layout in ("dense", "conv2d"):
            if layout == "dense" and (cfg["kind"] == "instance" or cfg.get("groups") == 6):
                continue  # one value per statistic: tested as an invariant/error instead
            cases.append(run_case(f"{name}_{layout}", cfg, "channels", conv_shapes[layout]))
    cases.append(run_case("batch_momentum_0.3_sequence_masked", options["batch_momentum_0.3"],
                          "sequence", [4, 5, FEATURES], lengths=[5, 3, 2, 5]))

    per_step = {"kind": "batch", "per_step": 5, "gamma_init": 0.1}
    cases.append(run_case("batch_per_step", per_step, "sequence", [4, 5, FEATURES],
                          eval_shape=[3, 7, FEATURES]))
    cases.append(run_case("batch_per_step_masked", per_step, "sequence", [5, 5, FEATURES],
                          lengths=[5, 3, 2, 5, 4], eval_shape=[5, 7, FEATURES]))
    cases.append(run_case("batch_per_step_cumulative",
                          {**per_step, "momentum": "cumulative"}, "sequence", [4, 5, FEATURES],
                          eval_shape=[4, 7, FEATURES]))

    out = pathlib.Path(__file__).with_name("torch_reference.json")
    out.write_text(json.dumps({"torch_version": torch.__version__, "features": FEATURES,
                               "cases": cases}))
    print(f"wrote {len(cases)} cases to {out}")

    import remedies  # the layers PyTorch lacks, written from their papers in float64

    remedies.main(pathlib.Path(__file__).with_name("remedies_reference.json"))


if __name__ == "__main__":
    main()
