#!/usr/bin/env python3
"""Times PyTorch's norm layers on the shapes of benches/norm_layers.rs, as that bench does: the
median over runs of the forward in eval mode under `torch.inference_mode()` (inference), of the
forward in training mode, and of forward + `y.sum().backward()`, on the
CPU with the number of threads given or on CUDA (synchronised inside each timed run). Prints one
JSON object per line: first {"torch": version} (and {"cuda_device": name} on CUDA), then
{"layer", "shape", "pass", "ms"}. Optional: the Rust bench runs it when a Python with torch is at
hand and never needs it. Exits with an error when CUDA is asked for and absent.

    python3 crates/norm/benches/pytorch/norm_layers.py --threads 2 --shapes 32x64x32x32 256x1024
    python3 crates/norm/benches/pytorch/norm_layers.py --device cuda --shapes 64x256x56x56
"""

import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchkit" / "python"))
import torch_bench  # noqa: E402


def median_ms(run, runs, sync):
    run()  # warm-up
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def layers(shape):
    """The PyTorch layer of each normlab family on this input (None where it has none)."""
    features, conv = shape[1], len(shape) == 4
    rms = torch.nn.RMSNorm(shape[1:], eps=1.1920928955078125e-07)
    return {
        "batch": torch.nn.BatchNorm2d(features) if conv else torch.nn.BatchNorm1d(features),
        "layer": torch.nn.GroupNorm(1, features) if conv else torch.nn.LayerNorm(features),
        "group": torch.nn.GroupNorm(32, features),
        "instance": torch.nn.InstanceNorm2d(features, affine=True) if conv else None,
        "rms": rms,
    }


def arguments(parser):
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--shapes", nargs="+", default=["32x64x32x32", "256x1024"])


def main():
    args, sync = torch_bench.start(arguments)
    for shape in ([int(d) for d in s.split("x")] for s in args.shapes):
        x = torch.randn(*shape, device=args.device)
        for name, layer in layers(shape).items():
            if layer is None:
                continue
            layer.to(args.device)

            def inference():
                with torch.inference_mode():
                    layer(x)

            def forward():
                with torch.no_grad():
                    layer(x)

            def backward():
                xg = x.clone().requires_grad_()
                layer(xg).sum().backward()

            passes = (
                ("inference", inference, False),
                ("forward", forward, True),
                ("forward+backward", backward, True),
            )
            for pass_name, run, training in passes:
                layer.train(training)
                ms = median_ms(run, args.runs, sync)
                print(json.dumps({"layer": name, "shape": shape, "pass": pass_name, "ms": ms}))


if __name__ == "__main__":
    main()
