"""Reference values for the norm layers PyTorch does not have: the published remedies for batch
norm's failures, each written op by op from its paper's equations, in float64.

Called by generate.py; writes remedies_reference.json. Every family is computed on a
channels-first view x: [N, C, S] with weights w: [N, 1, S] (1 at real positions, 0 at padding),
so that dense, conv and padded sequence layouts share one implementation. Each case records, as
generate.py's cases do, the output of the last of several training steps, the gradients of
sum(output * grad_output) with respect to the input and every parameter, the running statistics
after all steps, and the eval output on a further input.

Equations and defaults (see also crates/norm/docs/contract.md):
- Batch Renormalization, Ioffe 2017, Algorithm 1; moving mean and moving standard deviation
  (stored as the variance sigma^2 - eps, so that eval is sqrt(var + eps) = sigma, as Keras does).
- Ghost batch norm, Hoffer et al. 2017: batch norm per chunk of `ghost_batch` samples; the
  running statistics fold in every chunk in turn (the authors' code).
- Filter Response Normalization + TLU, Singh & Krishnan 2020; learned epsilon eps + |eps_l|.
- EvoNorm-S0 and -B0, Liu et al. 2020 (the official TensorFlow code).
- Online Normalization, Chiley et al. 2019: the per-sample forward and the control-process
  backward of the authors' kernels, then layer scaling.
- Weight Standardization, Qiao et al. 2019 (biased variance, epsilon inside the square root).
"""

import json

import numpy as np
import torch

FEATURES = 6
TRAIN_STEPS = 3
RNG = np.random.RandomState(20261124)
DOUBLE = torch.float64


def tensor(shape, scale=2.0, offset=0.5):
    return torch.tensor(RNG.randn(*shape) * scale + offset, dtype=DOUBLE)


def flat(t):
    return None if t is None else [float(v) for v in t.detach().reshape(-1).tolist()]


# --- masked statistics on x: [N, C, S] with w broadcastable to it ---------------------------

def wmean(x, w, dims):
    w = w.expand_as(x)
    return (x * w).sum(dims, keepdim=True) / w.sum(dims, keepdim=True).clamp_min(1.0)


def wvar(x, w, dims):
    """Biased variance over the real elements."""
    return wmean((x - wmean(x, w, dims)) ** 2, w, dims)


def count(x, w, dims):
    return w.expand_as(x).sum(dims, keepdim=True)


def grouped(x, groups):
    n, c, s = x.shape
    return x.reshape(n, groups, (c // groups) * s)


def grouped_weights(w, c, groups):
    n, _, s = w.shape
    return w.expand(n, c, s).reshape(n, groups, (c // groups) * s)


def per_channel(v):
    return v.view(1, -1, 1)


# --- the families --------------------------------------------------------------------------

class Family:
    """Parameters and state of one layer across the steps of a case."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.kind = cfg["kind"]
        self.affine = cfg.get("affine", True)
        self.gamma = tensor([FEATURES], 0.5, 1.0).requires_grad_() if self.affine else None
        self.beta = tensor([FEATURES], 0.5, 0.0).requires_grad_() if self.affine else None
        self.extra = {}  # name -> parameter tensor, compared by gradient
        self.running = None  # (mean, var), compared after training
        self.steps = 0

    def affine_of(self, x_hat):
        if not self.affine:
            return x_hat
        return x_hat * per_channel(self.gamma) + per_channel(self.beta)

    def fold(self, mean, var, count_, default_variance="unbiased"):
        """Folds batch statistics into the running ones like batch norm: momentum (PyTorch's
        convention) or the cumulative average, the variance unbiased unless configured."""
        m = self.cfg.get("momentum", 0.1)
        factor = 1.0 / (self.steps + 1) if m == "cumulative" else m
        if self.cfg.get("running_variance", default_variance) == "unbiased":
            var = var * count_ / (count_ - 1)
        old_mean, old_var = self.running
        self.running = (old_mean + (mean - old_mean) * factor, old_var + (var - old_var) * factor)


class BatchRenorm(Family):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.running = (torch.zeros(FEATURES, dtype=DOUBLE), torch.ones(FEATURES, dtype=DOUBLE))

    def limits(self):
        c = self.cfg
        warmup = c["warmup_steps"]

        def progress(end):
            if self.steps >= end:
                return 1.0
            return min(1.0, max(0.0, (self.steps - warmup) / (end - warmup)))

        r_max = 1.0 + (c["r_max"] - 1.0) * progress(c["r_max_steps"])
        d_max = c["d_max"] * progress(c["d_max_steps"])
        return r_max, d_max

    def forward(self, x, w, training):
        eps = self.cfg.get("epsilon", 1e-5)
        mean, var = self.running
        sigma = torch.sqrt(var + eps)
        if not training:
            return self.affine_of((x - per_channel(mean)) / per_channel(sigma))
        mu_b = wmean(x, w, (0, 2))
        sigma_b = torch.sqrt(wvar(x, w, (0, 2)) + eps)
        r_max, d_max = self.limits()
        r = (sigma_b / per_channel(sigma)).clamp(1.0 / r_max, r_max).detach()
        d = ((mu_b - per_channel(mean)) / per_channel(sigma)).clamp(-d_max, d_max).detach()
        y = self.affine_of((x - mu_b) / sigma_b * r + d)
        m = self.cfg.get("momentum", 0.01)
        factor = 1.0 / (self.steps + 1) if m == "cumulative" else m
        mu_b, sigma_b = mu_b.detach().reshape(-1), sigma_b.detach().reshape(-1)
        new_sigma = sigma + (sigma_b - sigma) * factor
        self.running = (mean + (mu_b - mean) * factor, (new_sigma ** 2 - eps).clamp_min(0.0))
        self.steps += 1
        return y


class GhostBatch(Family):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.running = (torch.zeros(FEATURES, dtype=DOUBLE), torch.ones(FEATURES, dtype=DOUBLE))

    def chunks(self, n, s):
        g = self.cfg["ghost_batch"]
        sizes = [g] * (n // g) + ([n % g] if n % g else [])
        if len(sizes) > 1 and sizes[-1] == 1 and s == 1:
            last = sizes.pop()
            sizes[-1] += last
        return sizes

    def forward(self, x, w, training):
        eps = self.cfg.get("epsilon", 1e-5)
        if not training:
            mean, var = self.running
            return self.affine_of((x - per_channel(mean)) / torch.sqrt(per_channel(var) + eps))
        outs, start = [], 0
        w = w.expand(x.shape[0], 1, x.shape[2])
        for size in self.chunks(x.shape[0], x.shape[2]):
            xc, wc = x[start:start + size], w[start:start + size]
            mu, var = wmean(xc, wc, (0, 2)), wvar(xc, wc, (0, 2))
            outs.append((xc - mu) / torch.sqrt(var + eps))
            self.fold(mu.detach().reshape(-1), var.detach().reshape(-1),
                      count(xc, wc, (0, 2)).reshape(-1))
            self.steps += 1
            start += size
        return self.affine_of(torch.cat(outs, 0))


class FilterResponse(Family):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.extra["tau"] = torch.zeros(FEATURES, dtype=DOUBLE, requires_grad=True)
        if cfg.get("learned_epsilon", False):
            self.extra["epsilon"] = torch.full([1], 1e-4, dtype=DOUBLE, requires_grad=True)

    def forward(self, x, w, training):
        eps = self.cfg.get("epsilon", 1e-6)
        if "epsilon" in self.extra:
            eps = eps + self.extra["epsilon"].abs()
        nu2 = wmean(x * x, w, (2,))
        y = self.affine_of(x / torch.sqrt(nu2 + eps))
        return torch.maximum(y, per_channel(self.extra["tau"]))


class EvoNormS0(Family):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.extra["v"] = torch.ones(FEATURES, dtype=DOUBLE, requires_grad=True)

    def forward(self, x, w, training):
        eps = self.cfg.get("epsilon", 1e-5)
        groups = self.cfg["groups"]
        n, c, s = x.shape
        var = wvar(grouped(x, groups), grouped_weights(w, c, groups), (2,))
        std = torch.sqrt(var + eps).expand(n, groups, (c // groups) * s).reshape(n, c, s)
        v = per_channel(self.extra["v"])
        return self.affine_of(x * torch.sigmoid(v * x) / std)


class EvoNormB0(Family):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.extra["v"] = torch.ones(FEATURES, dtype=DOUBLE, requires_grad=True)
        self.running = (torch.zeros(FEATURES, dtype=DOUBLE), torch.ones(FEATURES, dtype=DOUBLE))

    def forward(self, x, w, training):
        eps = self.cfg.get("epsilon", 1e-5)
        if training:
            var_b = wvar(x, w, (0, 2))
            # The official code keeps the biased batch variance.
            self.fold(wmean(x, w, (0, 2)).detach().reshape(-1), var_b.detach().reshape(-1),
                      count(x, w, (0, 2)).reshape(-1), default_variance="biased")
            self.steps += 1
        else:
            var_b = per_channel(self.running[1])
        instance = torch.sqrt(wvar(x, w, (2,)) + eps)
        v = per_channel(self.extra["v"])
        den = torch.maximum(torch.sqrt(var_b + eps), v * x + instance)
        return self.affine_of(x / den)


class OnlineNormalize(torch.autograd.Function):
    """The forward and the control-process backward of Online Normalization, per channel and
    sample by sample in batch order, as the authors' kernels compute them."""

    @staticmethod
    def forward(ctx, x, w, state, a_fwd, a_bwd, eps):
        n, c, s = x.shape
        mu, var = state["mean"], state["var"]
        y = torch.zeros_like(x)
        scales = torch.ones(n, c, dtype=DOUBLE)
        for t in range(n):
            real = w[t, 0] > 0
            if not real.any():
                continue
            scale = torch.sqrt(var + eps)
            y[t][:, real] = (x[t][:, real] - mu[:, None]) / scale[:, None]
            scales[t] = scale
            xr = x[t][:, real]
            mean_x = xr.mean(1)
            var_x = ((xr - mean_x[:, None]) ** 2).mean(1)
            d = mean_x - mu
            var = a_fwd * var + (1 - a_fwd) * var_x + a_fwd * (1 - a_fwd) * d * d
            mu = mu + (1 - a_fwd) * d
        state["mean"], state["var"] = mu, var
        ctx.save_for_backward(y, scales, w)
        ctx.state, ctx.a_bwd = state, a_bwd
        return y

    @staticmethod
    def backward(ctx, g):
        y, scales, w = ctx.saved_tensors
        state, a_bwd = ctx.state, ctx.a_bwd
        u, v = state["u"], state["v"]
        dx = torch.zeros_like(g)
        for t in range(g.shape[0]):
            real = w[t, 0] > 0
            if not real.any():
                continue
            gt = g[t][:, real] - (1 - a_bwd) * v[:, None] * y[t][:, real]
            v = v + (gt * y[t][:, real]).mean(1)
            gt = gt / scales[t][:, None]
            d = gt - (1 - a_bwd) * u[:, None]
            u = u + d.mean(1)
            dx[t][:, real] = d
        state["u"], state["v"] = u, v
        return dx, None, None, None, None, None


class Online(Family):
    def __init__(self, cfg):
        super().__init__(cfg)
        zeros = torch.zeros(FEATURES, dtype=DOUBLE)
        self.state = {"mean": zeros, "var": torch.ones(FEATURES, dtype=DOUBLE), "u": zeros,
                      "v": zeros}

    def forward(self, x, w, training):
        c = self.cfg
        eps = c.get("epsilon", 1e-5)
        if training:
            w = w.expand(x.shape[0], 1, x.shape[2])
            y = OnlineNormalize.apply(x, w, self.state, c.get("alpha_forward", 0.999),
                                      c.get("alpha_backward", 0.99), eps)
        else:
            mean, var = self.state["mean"], self.state["var"]
            y = (x - per_channel(mean)) / torch.sqrt(per_channel(var) + eps)
        out = self.affine_of(y)
        compensation = c.get("error_compensation", "layer_scaling")
        if compensation == "layer_scaling":
            out = out / torch.sqrt(wmean(out * out, w, (1, 2)) + 1e-5)
        elif compensation == "clamp":
            out = out.clamp(-5.0, 5.0)
        return out

    @property
    def running_stats(self):
        return self.state["mean"], self.state["var"]


FAMILIES = {"batch_renorm": BatchRenorm, "batch": GhostBatch, "frn": FilterResponse,
            "evonorm_s0": EvoNormS0, "evonorm_b0": EvoNormB0, "online": Online}


# --- layouts and cases ---------------------------------------------------------------------

def apply(family, x, layout, lengths, training):
    """The layer on x in its layout; sequences [N, T, F] are [N, F, T] with padding weights."""
    if layout == "sequence":
        n, t, _ = x.shape
        mask = torch.ones(n, t, dtype=torch.bool) if lengths is None else \
            torch.arange(t).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
        w = mask.to(DOUBLE).unsqueeze(1)
        y = family.forward(x.transpose(1, 2), w, training).transpose(1, 2)
        return y * mask.unsqueeze(2)
    n = x.shape[0]
    w = torch.ones(n, 1, int(np.prod(x.shape[2:])) if x.dim() > 2 else 1, dtype=DOUBLE)
    return family.forward(x.reshape(n, FEATURES, -1), w, training).reshape(x.shape)


def running_of(family):
    if isinstance(family, Online):
        return family.running_stats
    return family.running


def run_case(name, cfg, layout, shape, lengths=None, eval_shape=None):
    family = FAMILIES[cfg["kind"]](cfg)
    eval_shape = eval_shape or shape
    record = {"name": name, "config": cfg, "layout": layout, "shape": shape,
              "eval_shape": eval_shape, "lengths": lengths, "gamma": flat(family.gamma),
              "beta": flat(family.beta), "train_inputs": [], "train_grad_outputs": []}
    for step in range(TRAIN_STEPS):
        x = tensor(shape).requires_grad_()
        grad_output = tensor(shape, 1.0, 0.0)
        record["train_inputs"].append(flat(x))
        out = apply(family, x, layout, lengths, True)
        for p in [family.gamma, family.beta, *family.extra.values()]:
            if p is not None:
                p.grad = None
        (out * grad_output).sum().backward()
        if step < TRAIN_STEPS - 1:
            record["train_grad_outputs"].append(flat(grad_output))
    record["grad_output"] = flat(grad_output)
    record["output"] = flat(out)
    record["grad_input"] = flat(x.grad)
    record["grad_gamma"] = flat(family.gamma.grad) if family.affine else None
    record["grad_beta"] = flat(family.beta.grad) if family.affine else None
    record["grad_params"] = {k: flat(p.grad) for k, p in family.extra.items()}
    running = running_of(family)
    record["running_mean"] = flat(running[0]) if running else None
    record["running_var"] = flat(running[1]) if running else None
    x_eval = tensor(eval_shape)
    record["eval_input"] = flat(x_eval)
    with torch.no_grad():
        eval_lengths = None if lengths is None else \
            [min(eval_shape[1], length + eval_shape[1] - shape[1]) for length in lengths]
        record["eval_lengths"] = eval_lengths
        record["eval_output"] = flat(apply(family, x_eval, layout, eval_lengths, False))
    return record


def weight_standardization_case(name, shape, axis, eps=1e-5):
    """Each slice of the weight along `axis` (one output unit) standardized over the rest."""
    w = tensor(shape, 0.3, 0.05).requires_grad_()
    r = tensor(shape, 1.0, 0.0)
    dims = [d for d in range(len(shape)) if d != axis]
    mean = w.mean(dims, keepdim=True)
    var = ((w - mean) ** 2).mean(dims, keepdim=True)
    out = (w - mean) / torch.sqrt(var + eps)
    (out * r).sum().backward()
    return {"name": name, "shape": shape, "axis": axis, "epsilon": eps, "weight": flat(w),
            "grad_output": flat(r), "output": flat(out), "grad_weight": flat(w.grad)}


def main(out):
    shapes = {"dense": [5, FEATURES], "conv1d": [4, FEATURES, 5], "conv2d": [3, FEATURES, 4, 5]}
    renorm = {"kind": "batch_renorm", "momentum": 0.3, "r_max": 1.5, "d_max": 0.5,
              "warmup_steps": 1, "r_max_steps": 2, "d_max_steps": 3}
    families = {
        # Plain batch norm for two steps, then r in [1/1.5, 1.5] and d in [-0.25, 0.25].
        "batch_renorm": renorm,
        "batch_renorm_plain": {**renorm, "r_max": 1.0, "d_max": 0.0},
        "ghost_batch_2": {"kind": "batch", "ghost_batch": 2},
        "ghost_batch_2_cumulative": {"kind": "batch", "ghost_batch": 2,
                                     "momentum": "cumulative"},
        "frn": {"kind": "frn"},
        "frn_learned_epsilon": {"kind": "frn", "learned_epsilon": True},
        "evonorm_s0": {"kind": "evonorm_s0", "groups": 3},
        "evonorm_b0": {"kind": "evonorm_b0"},
        "online": {"kind": "online", "alpha_forward": 0.9, "alpha_backward": 0.8},
        "online_clamp": {"kind": "online", "alpha_forward": 0.9, "alpha_backward": 0.8,
                         "error_compensation": "clamp"},
        "online_plain": {"kind": "online", "alpha_forward": 0.9, "alpha_backward": 0.8,
                         "error_compensation": "none", "affine": False},
    }
    cases = []
    for name, cfg in families.items():
        for layout, shape in shapes.items():
            cases.append(run_case(f"{name}_{layout}", cfg, "channels", shape))
        cases.append(run_case(f"{name}_sequence_masked", cfg, "sequence", [4, 5, FEATURES],
                              lengths=[5, 3, 2, 5]))
    weights = [weight_standardization_case("ws_conv2d", [8, 3, 3, 3], 0),
               weight_standardization_case("ws_linear", [5, 7], 1)]
    out.write_text(json.dumps({"torch_version": torch.__version__, "features": FEATURES,
                               "cases": cases, "weight_standardization": weights}))
    print(f"wrote {len(cases)} cases and {len(weights)} weight cases to {out}")
