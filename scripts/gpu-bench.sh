#!/usr/bin/env bash
# The GPU measurements, as one script for a borrowed GPU machine that builds nothing there:
#
#   scripts/gpu-bench.sh build        # here: the wgpu benches and runner, stripped and packed
#                                     # into target/gpu-kit.tar.xz (builds burn with wgpu: about
#                                     # 15 min from cold on 2 cores, a minute when warm)
#   scripts/gpu-bench.sh run OUT      # there, in a copy of the checkout that carries the kit:
#                                     # the norm-layer and training-step benches on wgpu, and the
#                                     # quick experiment retrained on wgpu against its committed
#                                     # flex records, run by run; everything lands in OUT
#   scripts/gpu-bench.sh run OUT --check    # the same as a check that it runs end to end
#                                           # (lavapipe here): one timed run each, the smaller
#                                           # shapes, no table written, 2 runs of quick
#
# The benches time with the device synchronised inside every timed call and take the GPU's own
# copy bandwidth as the floor; PyTorch's CUDA times come beside them when the machine's python3
# (or NORMLAB_PYTHON) has torch with CUDA. The binaries are built in the dev profile, which
# optimizes every dependency and the norm, model and optim crates as a release build does.
set -euo pipefail
cd "$(dirname "$0")/.."

kit=target/gpu-kit
case "${1:-}" in
build)
    rm -rf "$kit" && mkdir -p "$kit"
    # `cargo test --no-run` prints where each bench executable went.
    for bench in normlab-norm:norm_layers normlab-model:training_step; do
        package=${bench%%:*} name=${bench##*:}
        exe=$(cargo test --locked -p "$package" --features wgpu --bench "$name" --no-run 2>&1 |
            sed -n "s|.*Executable benches/$name.rs (\(.*\))|\1|p")
        cp "$exe" "$kit/$name"
    done
    cargo build --locked -p normlab-runner --features wgpu
    cp "${CARGO_TARGET_DIR:-target}/debug/normlab" "$kit/normlab"
    strip "$kit"/*
    tar -C target -cJf target/gpu-kit.tar.xz gpu-kit
    ls -l target/gpu-kit.tar.xz
    ;;
run)
    out=${2:?usage: scripts/gpu-bench.sh run OUT [--check]}
    check=${3:-}
    runs=1000
    [ "$check" = --check ] && runs=2
    mkdir -p "$out"
    [ -d "$kit" ] || tar -C target -xJf target/gpu-kit.tar.xz
    export NORMLAB_ROOT=$PWD
    export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
    { nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"; } | tee "$out/gpu.txt"
    for bench in norm_layers training_step; do
        "$kit/$bench" --device wgpu $check 2>&1 | tee "$out/$bench.txt"
    done
    cp results/benchmarks/*_wgpu.* "$out/" 2>/dev/null || true
    # The quick experiment's grid retrained on wgpu, each run beside its committed flex record.
    "$kit/normlab" verify results/quick --device wgpu --runs "$runs" 2>&1 | tee "$out/quick_wgpu.txt"
    ;;
*)
    sed -n '2,18p' "$0" >&2
    exit 2
    ;;
esac
