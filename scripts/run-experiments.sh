#!/usr/bin/env bash
# Runs every experiment of the reproduction suite and leaves results/<name>/ for each.
# Usage: scripts/run-experiments.sh [name ...]   (default: all, in the order below)
# Finished runs are kept: rerunning resumes where an interrupted suite stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch-data.sh fashion-mnist
scripts/fetch-data.sh mnist
scripts/fetch-data.sh japanese-vowels
scripts/fetch-data.sh shakespeare

# `cost` measures step times: it runs alone (one job), as does `regularization`, whose dropout
# masks come from burn's process-wide RNG and are reproducible only without parallel runs.
declare -A JOBS=([cost]=1 [regularization]=1)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(quick small_batch small_batch_quick ghost_batch non_iid online recurrent
    recurrent_vowels gradient_flow gradient_flow_rows recurrent_text recurrent_text_quick learning_rate
    init_scale covariate_shift cost regularization)

cargo build --release -p normlab-runner
for name in "${names[@]}"; do
    start=$(date +%s)
    # What `cargo run --release -- run ...` runs, without a rebuild check between experiments.
    target/release/normlab run "experiments/$name.toml" --jobs "${JOBS[$name]:-2}"
    echo "$name: $(( $(date +%s) - start )) s"
done
