"""Float64 reference values of one BN-LSTM layer, written from recurrent batch norm's equations
(Cooijmans et al. 2017, eqs. 6-8), for crates/model/tests/bn_lstm_reference.rs.

    (i, f, g, o) = BN(Wh h_{t-1}; gamma_h) + BN(Wx x_t; gamma_x) + b
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(BN(c_t; gamma_c) + beta_c)

Each BN keeps its own statistics for every time step (per_step = T): in training, the batch's
mean and biased variance at that step (epsilon 1e-5); it folds them into its running averages
(momentum 0.1, the unbiased variance, starting at mean 0 and variance 1), which evaluation then
uses. gamma starts at 0.1 and beta at 0 in all three; h_0 = c_0 = 0; the gates are the four
consecutive blocks of H columns of x @ Wx, in the order i, f, g, o.

The inputs are the values normlab_testkit::values gives (from their index alone): x [N, T, F]
seed 4, Wx [F, 4H] seed 1, Wh [H, 4H] seed 2, b [4H] seed 3, the loss's weights on the hidden
states [N, T, H] seed 5 (loss = sum(h * weights)), and the evaluation input [N, T, F] seed 6.

Usage: pip install torch numpy; python3 crates/model/tests/reference/bn_lstm.py
(writes bn_lstm.json beside itself; a second run writes the same file).
"""

import json
import os

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
N, T, F, H = 5, 4, 3, 4
EPSILON, MOMENTUM, GAMMA = 1e-5, 0.1, 0.1


def values(shape, seed):
    """normlab_testkit::values, in f32 like the Rust side, then widened to float64."""
    count = int(np.prod(shape))
    index = np.arange(count, dtype=np.uint64)
    k = ((index + np.uint64(1)) * np.uint64(2654435761) + np.uint64(seed * 97)) % np.uint64(1000)
    v = k.astype(np.float32) / np.float32(250.0) - np.float32(2.0)
    return torch.tensor(v.astype(np.float64)).reshape(shape)


class StepBatchNorm:
    """Batch norm with a statistics slot per time step; gamma 0.1, beta 0 (no gradient needed:
    the test checks the input's and the weights' gradients)."""

    def __init__(self, width):
        self.mean = torch.zeros(T, width)
        self.var = torch.ones(T, width)

    def train(self, a, t):
        mean, var = a.mean(0), a.var(0, unbiased=False)
        with torch.no_grad():
            unbiased = a.var(0, unbiased=True)
            self.mean[t] = (1 - MOMENTUM) * self.mean[t] + MOMENTUM * mean
            self.var[t] = (1 - MOMENTUM) * self.var[t] + MOMENTUM * unbiased
        return GAMMA * (a - mean) / torch.sqrt(var + EPSILON)

    def eval(self, a, t):
        return GAMMA * (a - self.mean[t]) / torch.sqrt(self.var[t] + EPSILON)


def layer(x, wx, wh, b, norms, train):
    mode = "train" if train else "eval"
    h, c, states = torch.zeros(N, H), torch.zeros(N, H), []
    for t in range(T):
        x_term = getattr(norms["input"], mode)(x[:, t] @ wx, t)
        h_term = getattr(norms["recurrent"], mode)(h @ wh, t)
        i, f, g, o = (x_term + h_term + b).split(H, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(getattr(norms["cell"], mode)(c, t))
        states.append(h)
    return torch.stack(states, 1)


def flat(t):
    return [float(v) for v in t.detach().reshape(-1)]


def main():
    x = values([N, T, F], 4).requires_grad_()
    wx = values([F, 4 * H], 1).requires_grad_()
    wh = values([H, 4 * H], 2).requires_grad_()
    b = values([4 * H], 3).requires_grad_()
    norms = {
        "input": StepBatchNorm(4 * H),
        "recurrent": StepBatchNorm(4 * H),
        "cell": StepBatchNorm(H),
    }
    states = layer(x, wx, wh, b, norms, train=True)
    (states * values([N, T, H], 5)).sum().backward()
    with torch.no_grad():
        eval_states = layer(values([N, T, F], 6), wx, wh, b, norms, train=False)
    reference = {
        "shape": {"batch": N, "steps": T, "features": F, "hidden": H},
        "train_states": flat(states),
        "grad_input": flat(x.grad),
        "grad_input_weight": flat(wx.grad),
        "grad_recurrent_weight": flat(wh.grad),
        "grad_bias": flat(b.grad),
        "eval_states": flat(eval_states),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bn_lstm.json")
    with open(path, "w") as f:
        json.dump(reference, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
