#!/usr/bin/env bash
# What gives the same bits on another kind of CPU. This machine's CPU runs natively; qemu's
# user-mode emulator presents two others on the same binaries: `Haswell` (AVX2 and FMA, no
# AVX-512) and `Nehalem` (SSE4.2, no AVX, no FMA). For each, `cpu_fingerprint` hashes the output
# of burn's and normlab's operations on fixed inputs, and `normlab verify results/quick` retrains
# the quick experiment's runs (on Haswell, as the other common kind of x86-64 server).
# Writes results/benchmarks/cross_cpu.md. Needs Debian's qemu-user (installed if missing).
#
# Cost on the 2-core machine (2026-12-04): the example and the binary build in about a minute
# when the tests have built the rest; the fingerprints take seconds, verify 12 s natively and
# about 9 min under the emulator (48 runs).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v qemu-x86_64 >/dev/null; then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends qemu-user >/dev/null
fi

cargo build -q -p normlab-model --example cpu_fingerprint
cargo build -q -p normlab-runner
target=${CARGO_TARGET_DIR:-target}
fingerprint="$target/debug/examples/cpu_fingerprint"
normlab="$target/debug/normlab"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

"$fingerprint" > "$scratch/native"
for cpu in Haswell Nehalem; do
    qemu-x86_64 -cpu "$cpu" "$fingerprint" 2>/dev/null > "$scratch/$cpu"
done
"$normlab" verify results/quick --runs 48 > "$scratch/verify-native" || true
qemu-x86_64 -cpu Haswell "$normlab" verify results/quick --runs 48 2>/dev/null \
    > "$scratch/verify-Haswell" || true

out=results/benchmarks/cross_cpu.md
native_cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { [[ " $flags " == *" $1 "* ]] && echo "$1"; }
{
    echo "# The same bits on another CPU?"
    echo
    echo "Made by \`scripts/cross-cpu.sh\` on $native_cpu ($(has avx512f) $(has avx2) $(has fma)),"
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ); the other CPUs are qemu's user-mode models of the same"
    echo "binaries: Haswell (AVX2 and FMA, no AVX-512) and Nehalem (SSE4.2, no AVX, no FMA)."
    echo
    echo "## Operations on fixed inputs (\`cpu_fingerprint\`)"
    echo
    echo "| operation | Haswell | Nehalem |"
    echo "| --- | --- | --- |"
    paste -d'|' "$scratch/native" "$scratch/Haswell" "$scratch/Nehalem" | while IFS='|' read -r a b c; do
        same() { [ "${1#*: }" = "${2#*: }" ] && echo "same bits" || echo "differs"; }
        echo "| ${a%%: *} | $(same "$a" "$b") | $(same "$a" "$c") |"
    done
    echo
    echo "## The quick experiment retrained (\`normlab verify results/quick --runs 48\`)"
    echo
    echo "Natively:"
    echo
    grep -E "^[0-9]+ of [0-9]+ runs|^The verdict" "$scratch/verify-native" | sed 's/^/- /'
    echo
    echo "On Haswell:"
    echo
    grep -E "^[0-9]+ of [0-9]+ runs|^Verdict|^The verdict" "$scratch/verify-Haswell" | sed 's/^/- /'
    echo
    echo "<details><summary>Every run on Haswell</summary>"
    echo
    grep -E "^\|" "$scratch/verify-Haswell"
    echo
    echo "</details>"
} > "$out"
echo "wrote $out"
