#!/usr/bin/env python3
"""Times one training step (forward, cross-entropy, backward, SGD with momentum) of the networks
of benches/training_step.rs in PyTorch on the CPU or on CUDA (synchronised before and after each
timed step): the same layers, shapes, norm sites and batch sizes, its own random weights and data.
Prints one JSON object per line: first {"torch": version} (and {"cuda_device": name} on CUDA),
then {"model", "norm", "batch", "ms"} with the median over the timed steps. Optional: the Rust
bench runs it when a Python with torch is at hand and never needs it. Exits with an error when
CUDA is asked for and absent.

    python3 crates/model/benches/pytorch/training_step.py --threads 2
    python3 crates/model/benches/pytorch/training_step.py --device cuda
"""

import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchkit" / "python"))
import torch_bench  # noqa: E402

# Warm-up steps, then timed steps: at least STEPS, and more until BUDGET_S seconds of timed
# steps have passed (at most MAX_STEPS), as the Rust bench times its own.
WARMUP, STEPS, MAX_STEPS, BUDGET_S = 3, 15, 1000, 1.0


def norm_2d(kind, channels):
    return {
        "none": nn.Identity(),
        "batch": nn.BatchNorm2d(channels),
        "group": nn.GroupNorm(4, channels),
        "layer": nn.GroupNorm(1, channels),
    }[kind]


def cnn(norm, channels=(8, 16, 32)):
    """Conv 3x3 (same padding, bias), norm, ReLU, 2x2 max pool per block; a dense head."""
    layers, c_in, side = [], 1, 28
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, padding=1), norm_2d(norm, c), nn.ReLU(), nn.MaxPool2d(2)]
        c_in, side = c, side // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * side * side, 10))


def mlp(norm, hidden=(256, 256)):
    """Linear, norm, ReLU per hidden layer; a linear head."""
    layers, width = [nn.Flatten()], 28 * 28
    for h in hidden:
        site = {"none": nn.Identity(), "batch": nn.BatchNorm1d(h), "layer": nn.LayerNorm(h)}[norm]
        layers += [nn.Linear(width, h), site, nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 10))


class Block(nn.Module):
    """normlab's basic block: conv 3x3 (stride 1 or 2, no bias), norm, ReLU, conv 3x3, norm, plus
    the shortcut (every second pixel and zero channels, half before and half after), ReLU."""

    def __init__(self, norm, c_in, c_out, stride):
        super().__init__()
        self.first = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.first_norm = norm_2d(norm, c_out)
        self.second = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.second_norm = norm_2d(norm, c_out)
        self.stride, self.widen = stride, c_out - c_in

    def forward(self, x):
        y = torch.relu(self.first_norm(self.first(x)))
        y = self.second_norm(self.second(y))
        shortcut = x[:, :, :: self.stride, :: self.stride]
        if self.widen:
            before = self.widen // 2
            shortcut = nn.functional.pad(shortcut, (0, 0, 0, 0, before, self.widen - before))
        return torch.relu(y + shortcut)


def resnet(norm, widths=(8, 16, 32), blocks=3):
    """normlab's ResNet-20 style network: a 3x3 stem, stages of basic blocks (stride 2 at each new
    stage), global average pooling and a linear head."""
    layers, c_in = [nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), norm_2d(norm, widths[0])], widths[0]
    layers.append(nn.ReLU())
    for stage, width in enumerate(widths):
        for block in range(blocks):
            layers.append(Block(norm, c_in, width, 2 if stage > 0 and block == 0 else 1))
            c_in = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 10))


class NormLstm(nn.Module):
    """normlab's LSTM layer as a step loop: `Wx x` for the whole sequence, then at every step a
    norm on `Wx x_t` and on `Wh h` separately and on the cell before its tanh (none, LN-LSTM, or
    recurrent BN with statistics per step), one bias after the norms, a head on the last step."""

    def __init__(self, norm, features=28, hidden=64, steps=28):
        super().__init__()
        self.norm = norm
        self.input = nn.Linear(features, 4 * hidden, bias=False)
        self.recurrent = nn.Linear(hidden, 4 * hidden, bias=False)
        self.bias = nn.Parameter(torch.zeros(4 * hidden))
        self.head = nn.Linear(hidden, 10)
        self.hidden = hidden

        def sites(width):
            if norm == "layer":
                return nn.LayerNorm(width)
            if norm == "batch(per_step)":
                return nn.ModuleList(nn.BatchNorm1d(width) for _ in range(steps))
            return None

        self.input_norm = sites(4 * hidden)
        self.recurrent_norm = sites(4 * hidden)
        self.cell_norm = sites(hidden)

    def site(self, norm, x, t):
        if norm is None:
            return x
        return norm[t](x) if isinstance(norm, nn.ModuleList) else norm(x)

    def forward(self, x):
        n, steps, _ = x.shape
        terms = self.input(x)
        h = x.new_zeros(n, self.hidden)
        c = x.new_zeros(n, self.hidden)
        for t in range(steps):
            x_term = self.site(self.input_norm, terms[:, t], t)
            h_term = self.site(self.recurrent_norm, self.recurrent(h), t)
            i, f, g, o = (x_term + h_term + self.bias).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(self.site(self.cell_norm, c, t))
        return self.head(h)


def cases():
    for batch in (2, 4, 32, 64):
        for norm in ("none", "batch", "group", "layer"):
            yield "cnn", norm, batch, lambda norm=norm: cnn(norm)
    for batch in (2, 4, 8, 32):
        for norm in ("none", "batch", "group"):
            yield "resnet", norm, batch, lambda norm=norm: resnet(norm)
    for batch in (2, 4, 64):
        for norm in ("none", "batch", "layer"):
            yield "mlp", norm, batch, lambda norm=norm: mlp(norm)
    for batch in (2, 4, 32):
        for norm in ("none", "layer", "batch(per_step)"):
            yield "lstm", norm, batch, lambda norm=norm: NormLstm(norm)


def step_ms(model, batch, sequences, device, sync):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    step = 0
    while len(times) < STEPS or (sum(times) < BUDGET_S * 1e3 and len(times) < MAX_STEPS):
        shape = (batch, 28, 28) if sequences else (batch, 1, 28, 28)
        x = torch.rand(*shape, device=device)
        labels = torch.randint(0, 10, (batch,), device=device)
        sync()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), labels).backward()
        optimizer.step()
        sync()
        if step >= WARMUP:
            times.append((time.perf_counter() - start) * 1e3)
        step += 1
    return statistics.median(times)


def main():
    args, sync = torch_bench.start()
    for model, norm, batch, build in cases():
        network = build().to(args.device).train()
        ms = step_ms(network, batch, model == "lstm", args.device, sync)
        print(json.dumps({"model": model, "norm": norm, "batch": batch, "ms": ms}))


if __name__ == "__main__":
    main()
