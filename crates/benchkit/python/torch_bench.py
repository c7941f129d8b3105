"""What the PyTorch scripts of normlab's benches share: their command line (threads, device and
each script's own options), the seed, the device check, the header lines benchkit reads, and the
device synchronisation each timed run ends with."""

import argparse
import json

import torch


def start(add_arguments=lambda parser: None):
    """Parses the command line (`--threads`, `--device` and what `add_arguments` adds), sets the
    threads and the seed, prints {"torch": version} (and {"cuda_device": name} on CUDA), and
    returns `(args, sync)`, `sync()` waiting for the device. Exits with an error when CUDA is asked
    for and absent."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    add_arguments(parser)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(json.dumps({"torch": torch.__version__}))
    if args.device == "cuda":
        print(json.dumps({"cuda_device": torch.cuda.get_device_name()}))
        return args, torch.cuda.synchronize
    return args, lambda: None
