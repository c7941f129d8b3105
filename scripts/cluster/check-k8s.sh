#!/usr/bin/env bash
# Checks scripts/cluster/k8s-indexed-job.yaml without a Kubernetes cluster, in three steps:
#
#   1. kubectl itself: `kubectl apply --dry-run=client -l step=train|merge` (the commands in the
#      manifest's header) and `kubectl create --dry-run=client` against a stub API server on loopback. Even a client
#      dry run asks a server: for its OpenAPI schema (validation), for discovery (which resource a
#      kind is) and, for apply, for the live objects. The stub answers discovery for batch/v1 Jobs
#      and "not found" to the rest, so kubectl parses, decodes and maps the file and applies the
#      label selectors; its schema validation is off (--validate=false): the stub has no schema.
#   2. Schema validation with kubernetes-validate (PyPI, in a venv), which bundles the Kubernetes
#      JSON schemas: field types, required fields and, with --strict, unknown fields, against the
#      oldest and newest versions it carries.
#   3. Rules the schema does not hold, which an API server or this project's scripts rely on.
#
#   scripts/cluster/check-k8s.sh [FILE]
#
# Needs kubectl (Debian's kubernetes-client is installed when there is none: root, apt-get),
# python3 and PyPI. What was and was not checked, and how it went: scripts/cluster/README.md.
set -euo pipefail
manifest=$(realpath -e "${1:-$(dirname "$0")/k8s-indexed-job.yaml}")
venv=${NORMLAB_K8S_VENV:-/tmp/normlab-k8s-venv}
scratch=$(mktemp -d)
stub_pid=
cleanup() {
    if [ -n "$stub_pid" ]; then kill "$stub_pid" 2>/dev/null || true; fi
    rm -rf "$scratch"
}
trap cleanup EXIT

kubectl=${KUBECTL:-kubectl}
if ! command -v "$kubectl" >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
fi
version=$("$kubectl" version --client -o json | python3 -c 'import json, sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')
echo "== 1. kubectl $version: dry runs against a stub server"
python3 - "$scratch/port" >"$scratch/requests.log" 2>&1 <<'EOF' &
# The stub: discovery that knows one resource, batch/v1 jobs; 404 for anything else (the OpenAPI
# schema, the live objects). Every request is logged.
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

discovery = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [{"name": "batch",
        "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}}]},
    "/apis/batch/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "batch/v1",
        "resources": [{"name": "jobs", "singularName": "", "namespaced": True, "kind": "Job",
                       "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}]},
}
not_found = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
             "code": 404, "message": "not found"}

class Stub(BaseHTTPRequestHandler):
    def answer(self):
        print(self.command, self.path, flush=True)
        found = self.command == "GET" and self.path.split("?")[0] in discovery
        body = json.dumps(discovery[self.path.split("?")[0]] if found else not_found).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer
    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Stub)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_port))
server.serve_forever()
EOF
stub_pid=$!
for _ in $(seq 50); do [ -s "$scratch/port" ] && break; sleep 0.1; done
# Its own discovery cache, so nothing is left in ~/.kube.
k=("$kubectl" --server "http://127.0.0.1:$(cat "$scratch/port")" --cache-dir "$scratch/cache")
expect() { # expect "<what>" "<names kubectl should print>" kubectl-args...
    local what=$1 want=$2 got
    shift 2
    got=$("${k[@]}" "$@" -f "$manifest" -o name | sort | tr '\n' ' ')
    if [ "$got" != "$want" ]; then
        echo "FAIL: $what gave '$got', not '$want'" >&2
        exit 1
    fi
    echo "ok: $what: $got"
}
expect "apply -l step=train" "job.batch/normlab-small-batch " \
    apply --dry-run=client --validate=false -l step=train
expect "apply -l step=merge" "job.batch/normlab-small-batch-merge " \
    apply --dry-run=client --validate=false -l step=merge
expect "create" "job.batch/normlab-small-batch job.batch/normlab-small-batch-merge " \
    create --dry-run=client --validate=false
echo "(kubectl asked the stub: $(awk '{print $2}' "$scratch/requests.log" | sed 's/?.*//' | sort -u | tr '\n' ' '))"

echo "== 2. kubernetes-validate --strict (bundled JSON schemas)"
[ -x "$venv/bin/kubernetes-validate" ] || {
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q kubernetes-validate==1.37.0
}
for version in 1.25.0 1.37.0; do # the oldest and newest schemas of kubernetes-validate 1.37.0
    out=$("$venv/bin/kubernetes-validate" --strict -k "$version" "$manifest" 2>&1) || {
        echo "$out" >&2
        exit 1
    }
    echo "$out"
    # An unknown kind or apiVersion is only a warning there ("Couldn't find schema"): fail on it.
    if grep -q "^WARN" <<<"$out"; then echo "FAIL: warnings above" >&2; exit 1; fi
done

echo "== 3. rules outside the schema"
"$venv/bin/python" - "$manifest" <<'EOF'
import re, sys, yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
jobs = {d["metadata"]["labels"]["step"]: d for d in docs}
problems = []
def check(ok, message):
    if not ok:
        problems.append(message)

check(sorted(jobs) == ["merge", "train"], f"one Job labelled step=train and one step=merge: {sorted(jobs)}")
quantity = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[kMGTPE]|[KMGTPE]i|m|u|n)?$")
for step, job in jobs.items():
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    # The API server's own rules for a Job (the schema knows none of them).
    check(pod.get("restartPolicy") in ("OnFailure", "Never"), f"{step}: a Job's restartPolicy is OnFailure or Never")
    check(spec.get("completionMode", "NonIndexed") in ("NonIndexed", "Indexed"), f"{step}: completionMode")
    for c in pod["containers"]:
        check(bool(c.get("image")), f"{step}: container {c['name']} has no image")
        for kind, values in c.get("resources", {}).items():
            for name, value in values.items():
                check(bool(quantity.match(str(value))), f"{step}: {kind}.{name} {value!r} is no quantity")
        for m in c.get("volumeMounts", []):
            check(m["name"] in {v["name"] for v in pod.get("volumes", [])}, f"{step}: mount of unknown volume {m['name']}")
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", []) if "persistentVolumeClaim" in v}
    check(claims == {"normlab-data"}, f"{step}: volume claim {claims}, not normlab-data")

# This project's: one pod per shard, each told the shard count, writing where the merge reads.
train, merge = jobs.get("train"), jobs.get("merge")
if train and merge:
    spec = train["spec"]
    check(spec.get("completionMode") == "Indexed", "train: an Indexed Job ($JOB_COMPLETION_INDEX)")
    env = {e["name"]: e.get("value") for e in spec["template"]["spec"]["containers"][0].get("env", [])}
    check(str(spec.get("completions")) == env.get("SHARDS"), f"train: completions {spec.get('completions')} != SHARDS {env.get('SHARDS')}")
    check(spec.get("parallelism", 1) <= spec.get("completions", 1), "train: parallelism above completions")
    args = " ".join(train["spec"]["template"]["spec"]["containers"][0]["args"])
    check("--shard $JOB_COMPLETION_INDEX/$SHARDS" in args, "train: --shard from the completion index")
    out = re.search(r"--results (\S+)", args).group(1).replace("$JOB_COMPLETION_INDEX", "*")
    name = re.search(r"experiments/(\w+)\.toml", args).group(1)
    check(f"{out}/{name}" in " ".join(merge["spec"]["template"]["spec"]["containers"][0]["args"]),
          f"merge: reads {out}/{name}")
if problems:
    sys.exit("FAIL:\n  " + "\n  ".join(problems))
print(f"ok: {len(docs)} Jobs: restartPolicy, completionMode, images, quantities, volumes; "
      "Indexed with completions == SHARDS, --shard from the index, merge reads what train writes")
EOF
echo "all checks passed"
