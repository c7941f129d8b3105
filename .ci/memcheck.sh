#!/usr/bin/env bash
# Valgrind's memcheck over the code with `unsafe` blocks (the fused norm kernels and their
# vector loops, the model's convolution kernel) and a tiny sweep of each model kind: the norm
# and model crates' whole test suites (the kernels' edge tests among them: no values, one value,
# lengths one off every vector width) and `normlab run` on the three configs beside this script,
# all under memcheck; any error it reports (an invalid read or write, a use of a value never
# written) fails the step. Sanitizers and Miri need a nightly toolchain this machine cannot
# fetch; Debian's valgrind runs on the stable build.
#
# Valgrind presents a CPU without AVX-512, so the kernels run their AVX2 loops here; the tests
# that compare every instruction set run them all natively in the plain test step.
#
# The binaries are those of `cargo test --workspace` with the runner built without mimalloc
# (memcheck tracks the system allocator's blocks and would not see a read of memory never
# written inside mimalloc's own pages): only the runner is rebuilt, every dependency keeps the
# features it had. Cost, measured on the 2-core machine (2026-12-04) after the test step: the
# runner rebuilt about 1 min, the norm suite 45 s and the model suite 60 s under memcheck, the
# three sweeps 17 s. About 3 min in all.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null; then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Each built test binary and the normlab binary, as `package kind directory executable`.
cargo test --workspace --locked --no-default-features --no-run --message-format=json \
    2>/dev/null | python3 -c '
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        package = m["package_id"].split("#")[-1].split("@")[0]
        kind = m["target"]["kind"][0]
        # The unit tests of a binary come as a test harness of kind "bin" too; only the real
        # binary (built for the integration tests) is the one to run.
        if kind == "bin" and m["profile"]["test"]:
            kind = "bin-tests"
        crate_dir = os.path.dirname(m["manifest_path"])
        print(package, kind, crate_dir, m["executable"])
' > "$scratch/binaries"

memcheck=(valgrind --error-exitcode=99 --quiet)
# Valgrind's CPU ignores the flush-to-zero and denormals-are-zero flags of MXCSR, so the test
# that checks what the flags do (in the model crate's `subnormals`, whose `unsafe` sets a
# register and touches no memory) runs natively in the plain test step and is skipped here.
while read -r package kind crate_dir executable; do
    case "$package:$kind" in
        normlab-norm:lib | normlab-norm:test | normlab-model:test)
            echo "memcheck: $package $(basename "$executable")"
            (cd "$crate_dir" && "${memcheck[@]}" "$executable" --quiet)
            ;;
        normlab-model:lib)
            echo "memcheck: $package $(basename "$executable") (without the subnormal flags' test)"
            (cd "$crate_dir" && "${memcheck[@]}" "$executable" --quiet \
                --skip subnormals::tests::the_pool_flushes_on_every_thread_and_nowhere_else)
            ;;
        normlab-runner:bin) normlab=$executable ;;
    esac
done < "$scratch/binaries"

for kind in mlp cnn resnet recurrent; do
    echo "memcheck: normlab run .ci/memcheck/$kind.toml"
    "${memcheck[@]}" "$normlab" run ".ci/memcheck/$kind.toml" --results "$scratch/results" >/dev/null
done
echo "memcheck: no errors"
