#!/usr/bin/env bash
# Writes results/benchmarks/profiles/lstm_step.md: where an LSTM training step spends its time
# on flex, from `perf record` over crates/model/examples/profile_step.rs, for the LSTM of
# benches/training_step.rs (one layer of 64 units, 28 steps of 28 features) without a norm at
# batch 32 and 4, with per-step batch norm at batch 4, and the same with subnormal floats
# flushed to zero (what they cost). Needs `perf` (Debian's linux-perf) and
# kernel.perf_event_paranoid <= 2. Takes under a minute.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p normlab-model --example profile_step
binary=target/release/examples/profile_step
out=results/benchmarks/profiles/lstm_step.md
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT

lstm() {
    printf 'kind = "recurrent"\ncell = "lstm"\nhidden = 64\nnorm = %s' "$1"
}

# profile TITLE BATCH NORM [flush-denormals]
profile() {
    local title=$1 batch=$2 norm=$3
    shift 3
    # A first run untimed by perf: its mean step time goes in the title's line.
    local ms
    ms=$("$binary" 300 "$batch" "$(lstm "$norm")" "$@")
    perf record -q -F 999 -o "$data/perf.data" "$binary" 300 "$batch" "$(lstm "$norm")" "$@" \
        >/dev/null 2>&1
    {
        echo "## $title"
        echo
        echo '```text'
        echo "$ms"
        perf report -i "$data/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
            grep -E '^ +[0-9.]+%' | sed -n '1,20p' | cut -c1-120 | sed 's/ *$//'
        echo '```'
        echo
    } >>"$out"
}

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
cat >"$out" <<HEADER
# Where an LSTM training step spends its time on flex

Written by \`scripts/profile-step.sh\`: \`perf record -F 999\` over
\`target/release/examples/profile_step 300 N '<model>'\` (the LSTM of
\`benches/training_step.rs\`: one layer of 64 units, 28 steps of 28 features, SGD with momentum),
then \`perf report --no-children --sort symbol\`, the top 20 symbols by self time; the step time
is the mean of a run without perf. Machine: $cpu, $(nproc) threads; $(date -u +%Y-%m-%d).

The last two profiles differ only in how the step's threads treat subnormal floats (read and
written as zero in the last: \`profile_step ... flush-denormals\` runs the steps on a
\`FlushingPool\`, whose threads, rayon's workers included, set the flush flags): the gap between
their step times is what subnormal numbers cost there. A run of the runner flushes them only
when its experiment asks (\`[train] subnormals = "flush"\`).

HEADER
profile "No norm, batch 32" 32 '{ kind = "none" }'
profile "No norm, batch 4" 4 '{ kind = "none" }'
profile "Batch norm per step, batch 4" 4 '{ kind = "batch", per_step = 28 }'
profile "Batch norm per step, batch 4, subnormals flushed to zero" 4 \
    '{ kind = "batch", per_step = 28 }' flush-denormals
echo "written to $out"
