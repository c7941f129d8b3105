#!/usr/bin/env python3
"""Times PyTorch's norm layers on the shapes of benches/norm_layers.rs, as that bench does: the
median over runs of the forward in training mode, and of forward + `y.sum().backward()`, on the
CPU with the number of threads given. Prints one JSON object per line: first {"torch": version},
then {"layer", "shape", "pass", "ms"}. Optional: the Rust bench runs it when a Python with torch is at hand and never needs it.

    python3 crates/norm/benches/pytorch/norm_layers.py --threads 2
"""

import argparse
import json
import statistics
import time

import torch


def median_ms(run, runs):
    run()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def layers(features, conv):
    """The PyTorch layer of each normlab family on this input (None where it has none)."""
    rms = torch.nn.RMSNorm([features, 32, 32] if conv else [features], eps=1.1920928955078125e-07)
    return {
        "batch": torch.nn.BatchNorm2d(features) if conv else torch.nn.BatchNorm1d(features),
        "layer": torch.nn.GroupNorm(1, features) if conv else torch.nn.LayerNorm(features),
        "group": torch.nn.GroupNorm(32, features),
        "instance": torch.nn.InstanceNorm2d(features, affine=True) if conv else None,
        "rms": rms,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(json.dumps({"torch": torch.__version__}))
    for shape in ([32, 64, 32, 32], [256, 1024]):
        conv = len(shape) == 4
        x = torch.randn(*shape)
        for name, layer in layers(shape[1], conv).items():
            if layer is None:
                continue
            layer.train()

            def forward():
                with torch.no_grad():
                    layer(x)

            def backward():
                xg = x.clone().requires_grad_()
                layer(xg).sum().backward()

            for pass_name, run in (("forward", forward), ("forward+backward", backward)):
                ms = median_ms(run, args.runs)
                print(json.dumps({"layer": name, "shape": shape, "pass": pass_name, "ms": ms}))


if __name__ == "__main__":
    main()
