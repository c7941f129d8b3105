#!/usr/bin/env bash
# One experiment's grid over a Slurm job array: task I of N trains `--shard I/N` into its own
# results folder, and a dependent job merges the folders into results/<experiment>/.
#
#   scripts/cluster/slurm-array.sh experiments/small_batch.toml 8
#
# Run it from a checkout on a shared file system, with `cargo build --release -p
# normlab-runner` done and the experiment's data fetched (`scripts/fetch-data.sh`). A task that
# is preempted and requeued resumes: finished runs are kept, and it takes over its own claims.
set -euo pipefail
config=${1:?usage: $0 experiments/<name>.toml SHARDS}
shards=${2:?usage: $0 experiments/<name>.toml SHARDS}
name=$(basename "$config" .toml)
cd "$(dirname "$0")/../.."
# Slurm opens --output before the job starts and does not make its folder: without this, every
# task fails at once ("Could not open stdout file").
mkdir -p shards

array=$(sbatch --parsable --array="0-$((shards - 1))" --cpus-per-task=2 --requeue \
    --job-name="normlab-$name" --output="shards/$name-%a.log" --wrap \
    "target/release/normlab run $config --results shards/\$SLURM_ARRAY_TASK_ID --shard \$SLURM_ARRAY_TASK_ID/$shards --jobs 2")

folders=$(for ((i = 0; i < shards; i++)); do printf 'shards/%d/%s ' "$i" "$name"; done)
echo "array job $array ($shards tasks)"
# --kill-on-invalid-dep: if a task fails for good, the merge is cancelled rather than left
# pending forever (DependencyNeverSatisfied).
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes \
    --job-name="normlab-$name-merge" --output="shards/$name-merge.log" --wrap \
    "target/release/normlab merge $folders --out results/$name")
echo "merge job $merge"
