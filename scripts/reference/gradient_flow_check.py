"""An independent float64 PyTorch check of experiments/gradient_flow.toml.

Recurrent BN's Figure 1 (Cooijmans et al. 2017) written from the paper's equations: a tanh RNN of
100 units reads MNIST pixel by pixel (784 steps), h_t = tanh(norm(Wh h_(t-1) + Wx x_t)), Wh the
identity, Wx orthogonal, h0 = 0, beta = 0, per-step batch statistics (biased variance, epsilon
1e-5), the cross-entropy of a readout of the last state, at initialization. It prints
||dLoss/dh_t|| / ||dLoss/dh_T|| (mean over the batch of each sequence's norm) at some steps back
from the last, for three random batches of 100 training images each: the numbers normlab's
report gives for its own runs should be of the same size (its batches and weights differ).

Usage: pip install torch; python3 scripts/reference/gradient_flow_check.py > \
       results/gradient_flow/pytorch_float64_check.md   (about 30 s)
"""

import struct
import sys

import torch

torch.set_default_dtype(torch.float64)
MNIST = "data/fetched/mnist/"
BACK = [10, 50, 130, 200, 300, 400, 600]
SETTINGS = [("none", None), ("layer", 1.0)] + [("batch", g) for g in (0.1, 0.3, 0.5, 0.7, 1.0)]


def read_idx(path, header):
    with open(path, "rb") as f:
        data = f.read()
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8)


def relative_gradients(images, labels, norm, gamma, generator):
    batch, steps, hidden = images.shape[0], images.shape[1], 100
    wh = torch.eye(hidden, requires_grad=True)
    wx = torch.nn.init.orthogonal_(torch.empty(1, hidden), generator=generator)
    readout = torch.randn(hidden, 10, generator=generator) * 0.1
    h, states = torch.zeros(batch, hidden), []
    for t in range(steps):
        a = h @ wh + images[:, t : t + 1] @ wx
        if norm == "batch":
            mean, var = a.mean(0, keepdim=True), a.var(0, unbiased=False, keepdim=True)
            a = gamma * (a - mean) / torch.sqrt(var + 1e-5)
        elif norm == "layer":
            mean, var = a.mean(1, keepdim=True), a.var(1, unbiased=False, keepdim=True)
            a = (a - mean) / torch.sqrt(var + 1e-5)
        h = torch.tanh(a)
        h.retain_grad()
        states.append(h)
    torch.nn.functional.cross_entropy(h @ readout, labels).backward()
    norms = [s.grad.norm(dim=1).mean().item() for s in states]
    # The blank start every sequence shares, left out as normlab does: up to the step by which
    # every sequence has seen a non-zero pixel.
    first = max(int((row != 0).nonzero()[0]) for row in images)
    return {b: norms[steps - 1 - b] / norms[-1] for b in BACK if steps - 1 - b >= first}, first


def main():
    pixels = read_idx(MNIST + "train-images-idx3-ubyte", 16).reshape(-1, 784).double() / 255
    labels = read_idx(MNIST + "train-labels-idx1-ubyte", 8).long()
    print("| setting | seed | first step kept | " + " | ".join(f"{b} back" for b in BACK) + " |")
    print("|---|---|---|" + "---|" * len(BACK))
    for norm, gamma in SETTINGS:
        for seed in range(3):
            generator = torch.Generator().manual_seed(seed)
            batch = torch.randperm(pixels.shape[0], generator=generator)[:100]
            ratios, first = relative_gradients(pixels[batch], labels[batch], norm, gamma, generator)
            name = norm if gamma is None or norm == "layer" else f"batch, gamma {gamma}"
            cells = [f"{ratios[b]:.1e}" if b in ratios else "-" for b in BACK]
            print(f"| {name} | {seed} | {first} | " + " | ".join(cells) + " |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
