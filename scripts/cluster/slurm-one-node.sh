#!/usr/bin/env bash
# Runs scripts/cluster/slurm-array.sh for real on a one-node Slurm cluster made on this machine,
# and checks that the merged results equal an unsharded run of the same grid, run by run.
#
#   scripts/cluster/slurm-one-node.sh                               # smoke grid, 3 shards
#   scripts/cluster/slurm-one-node.sh experiments/quick.toml 3      # 1.5 min on 2 cores
#   scripts/cluster/slurm-one-node.sh --stop-after ...              # stop the daemons after
#   scripts/cluster/slurm-one-node.sh --stop                        # only stop the daemons
#
# Needs root (apt-get, daemons) on Debian (bookworm: Slurm 22.05) and a built binary
# (target/release/normlab, or $NORMLAB_BIN). Slow and needs root: not part of CI. Idempotent:
# packages, config, key and daemons are made or started only when missing, so running it twice
# reuses the cluster of the first run. What happened when it was last run: scripts/cluster/README.md.
#
# Made for a container without systemd (the machine this was written on runs under gVisor):
# the daemons are started by hand, as root, with no cgroup plugins, and every address is
# 127.0.0.1. It is a test bed for the job scripts, not a template for a real cluster.
set -euo pipefail

stop=false stop_after=false args=()
for arg; do
    case $arg in
        --stop) stop=true ;;
        --stop-after) stop_after=true ;;
        -*) echo "usage: $0 [--stop | --stop-after] [experiments/<name>.toml [SHARDS]]" >&2; exit 2 ;;
        *) args+=("$arg") ;;
    esac
done
config=${args[0]:-experiments/smoke.toml}
shards=${args[1]:-3}

repo=$(cd "$(dirname "$0")/../.." && pwd)
# The temporary checkout the jobs run in (see below); removed and made anew on every run.
work=${NORMLAB_SLURM_WORK:-/tmp/normlab-slurm}
host=$(hostname -s)
conf=/etc/slurm/slurm.conf
marker="# Written by normlab's scripts/cluster/slurm-one-node.sh"
log=/var/log/slurm

# --- Stopping: by the pid files the daemons wrote, never by name. ----------------------------
stop_daemons() {
    local pidfile pid
    for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
        [ -s "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            echo "stopping $(basename "$pidfile" .pid) (pid $pid)"
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        fi
        rm -f "$pidfile"
    done
}
if $stop; then
    stop_daemons
    exit 0
fi

[ "$(id -u)" = 0 ] || { echo "run as root: it installs packages and starts daemons" >&2; exit 1; }

bin=${NORMLAB_BIN:-$repo/target/release/normlab}
[ -x "$bin" ] || bin=${CARGO_TARGET_DIR:-/nonexistent}/release/normlab
[ -x "$bin" ] || { echo "no normlab binary: cargo build --release -p normlab-runner" >&2; exit 1; }

# --- Packages. ---------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    # slurm-wlm pulls slurmctld, slurmd and the client commands (sbatch, squeue, sinfo).
    # Their postinst scripts enable systemd units, which do nothing without systemd.
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# --- munge: slurmctld, slurmd and the client commands authenticate to one another with it. ----
# The munge package makes /etc/munge/munge.key on install; make one if it is missing.
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile /etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
# /run is a fresh tmpfs in a new container: munged's socket folder may be gone.
install -d -o munge -g munge -m 0755 /run/munge
if ! { [ -s /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; }; then
    # As the munge user, as its init script would; munged daemonizes and writes its pid file.
    runuser -u munge -- /usr/sbin/munged
fi
munge -n | unmunge >/dev/null || { echo "munge does not work" >&2; exit 1; }

# --- slurm.conf: one node, this host, as slurmd sees its hardware. ---------------------------
if [ -e "$conf" ] && ! grep -qF "$marker" "$conf"; then
    echo "$conf exists and was not written by this script: leaving it and stopping" >&2
    exit 1
fi
# `slurmd -C` prints this node's line as slurmd detects it (CPUs, sockets, cores, threads,
# RealMemory); using it verbatim avoids a node drained for a configuration that does not match
# its hardware. The memory is not a consumable resource below, so its value only has to match.
node=$(slurmd -C | head -n 1 | sed "s/^NodeName=[^ ]*/NodeName=$host NodeAddr=127.0.0.1/")
mkdir -p /etc/slurm "$log" /var/spool/slurmctld /var/spool/slurmd
cat >"$conf.new" <<EOF
$marker: a one-node test
# cluster for the job scripts. Rewritten when the script runs; delete it to use your own.
ClusterName=normlab
SlurmctldHost=$host(127.0.0.1)
# Daemons as root: no slurm user, spool folders or permissions to set up for a test bed.
SlurmUser=root
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$log/slurmctld.log
SlurmdLogFile=$log/slurmd.log
# No cgroups: in a container (gVisor here) Slurm's cgroup plugins cannot manage the cgroup
# tree. linuxproc tracks a job's processes by parent pid; task/none binds nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd, so no sacct: each finished job's id, state and times go to a text file instead.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$log/jobcomp.log
MpiDefault=none
# No mail on this machine (and the jobs ask for none): quiets "Configured MailProg is invalid".
MailProg=/bin/true
# Cores are scheduled, memory is not (the jobs ask for none).
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# A node that was down (say, slurmd restarted) comes back by itself.
ReturnToService=2
SlurmdTimeout=300
$node State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
if ! cmp -s "$conf.new" "$conf"; then
    mv "$conf.new" "$conf"
    changed=true
else
    rm "$conf.new"
    changed=false
fi

# --- Daemons. ----------------------------------------------------------------------------------
# --stop-after: stop them however the script ends, a failed check included.
if $stop_after; then trap stop_daemons EXIT; fi
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if $changed; then
    # A new slurm.conf: restart both so that they read it (scontrol reconfigure cannot add nodes).
    for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
        running "$pidfile" && { kill "$(cat "$pidfile")"; sleep 1; }
        rm -f "$pidfile"
    done
fi
# Both daemonize and write their pid files. slurmctld recovers its saved state, so job ids go
# on from the last run's (the jobcomp log below is read by job id).
running /run/slurmctld.pid || slurmctld
running /run/slurmd.pid || slurmd

echo "waiting for node $host to be idle"
for i in $(seq 60); do
    state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
    case $state in
        idle | mix | alloc) break ;;
        # A node drained or down by an earlier failure: resume it (ReturnToService may not).
        drain* | down* | drng*) scontrol update nodename="$host" state=resume || true ;;
    esac
    [ "$i" = 60 ] && { echo "node never became idle:"; sinfo -N -l; tail -n 20 "$log"/slurm*.log; exit 1; } >&2
    sleep 1
done
sinfo -N -l

# --- The array, in a temporary checkout. ------------------------------------------------------
# slurm-array.sh writes shards/ and results/<name>/ into the checkout it is in; running it in a
# copy keeps the repository's committed results (and its shards/ folder) untouched. The copy
# has what the jobs read: the scripts, the experiment files, data/ (embedded sets, fetched ones
# if any) and the binary at target/release/normlab.
name=$(basename "$config" .toml)
src=$(realpath -e "$config" 2>/dev/null || realpath -e "$repo/$config")
rm -rf "$work"
mkdir -p "$work/target/release"
cp -r "$repo/scripts" "$repo/experiments" "$work/"
ln -s "$repo/data" "$work/data"
ln -s "$bin" "$work/target/release/normlab"
cp "$src" "$work/experiments/$name.toml.tmp" && mv "$work/experiments/$name.toml"{.tmp,}
config=experiments/$name.toml

start=$(date +%s)
# As a user would: from the checkout, with the experiment's path relative to it.
submitted=$(cd "$work" && scripts/cluster/slurm-array.sh "$config" "$shards")
echo "$submitted"
# slurm-array.sh prints "array job A" and "merge job M".
array=$(sed -n 's/^array job \([0-9]*\).*/\1/p' <<<"$submitted")
merge=$(sed -n 's/^merge job \([0-9]*\).*/\1/p' <<<"$submitted")
[ -n "$array" ] && [ -n "$merge" ] || { echo "could not read the job ids" >&2; exit 1; }

timeout=${NORMLAB_SLURM_TIMEOUT:-3600}
echo "waiting for jobs $array (array of $shards) and $merge (merge), at most $timeout s"
while [ -n "$(squeue -h -j "$array,$merge" 2>/dev/null)" ]; do
    if (( $(date +%s) - start > timeout )); then
        squeue >&2
        echo "FAIL: jobs still queued after $timeout s" >&2
        exit 1
    fi
    sleep 2
done
elapsed=$(( $(date +%s) - start ))
echo "all jobs left the queue $elapsed s after submission"
for f in "$work"/shards/*.log; do echo "== ${f#"$work"/}"; tail -n 2 "$f"; done
# Each job's end state and times, from the jobcomp text file (no accounting database, so no
# sacct, here). An array's tasks have job ids of their own and ArrayJobId=<array>.
echo "job  array task  name  state  start  end"
ours=$(grep -E "(^JobId=$merge|ArrayJobId=$array) " "$log/jobcomp.log" || true)
awk '{ delete f; for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
       print f["JobId"], (f["ArrayJobId"] == "" ? "-" : f["ArrayJobId"] "_" f["ArrayTaskId"]),
             f["Name"], f["JobState"],
             f["StartTime"], f["EndTime"] }' <<<"$ours"
completed=$(grep -c "JobState=COMPLETED" <<<"$ours" || true)
if [ "$completed" != $((shards + 1)) ]; then
    echo "FAIL: $completed of $((shards + 1)) jobs completed (see $log/slurmd.log)" >&2
    exit 1
fi

# --- The check: the merged folder equals an unsharded run, run by run. ------------------------
# As the sharding test in crates/runner/tests/sweep.rs does: every run record equal but for
# its timings (wall_seconds, step_seconds), and summary.csv equal but for step_ms and wall_s.
merged=$work/results/$name
[ -f "$merged/summary.csv" ] || { echo "FAIL: the merge job left no $merged/summary.csv" >&2; exit 1; }
whole=$work/unsharded
"$bin" run "$work/$config" --results "$whole" --jobs 2 >"$work/unsharded.log" 2>&1
python3 - "$merged" "$whole/$name" <<'EOF'
import csv, json, pathlib, sys

merged, whole = map(pathlib.Path, sys.argv[1:])

def records(folder):
    out = {}
    for path in sorted((folder / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        record.pop("wall_seconds", None)
        record.pop("step_seconds", None)
        out[path.name] = record
    return out

def summary(folder):
    with open(folder / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row.pop("step_ms", None)
        row.pop("wall_s", None)
    return rows

a, b = records(merged), records(whole)
problems = [] if b else ["the unsharded run has no records"]
if a.keys() != b.keys():
    problems.append(f"runs differ: only merged {sorted(a.keys() - b.keys())}, "
                    f"only unsharded {sorted(b.keys() - a.keys())}")
problems += [f"run {k} differs" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
if summary(merged) != summary(whole):
    problems.append("summary.csv differs (timings aside)")
if problems:
    sys.exit("FAIL: merged != unsharded:\n  " + "\n  ".join(problems))
print(f"OK: merged == unsharded: {len(a)} run records and summary.csv, timings aside")
EOF

$stop_after || echo "daemons left running; stop them with $0 --stop"
