#!/usr/bin/env bash
# Workers on other machines, as far as one machine allows: dnnpress-server in
# its own network namespace, two workers each in another, joined by veth
# pairs with link-local addresses (169.254.0.0/16: never routed, nothing
# leaves this machine), everything over TLS with a CA made here. Worker 1
# runs a job until its compress task has uploaded a checkpoint; then its
# namespace is cut off (link down) and every process in it killed; the
# lease expires and worker 2, in the other namespace, takes the task over
# and finishes the job from that checkpoint (the compress epochs before it
# are not run again).
#
# usage: tests/e2e/netns.sh BUILD_DIR      (root: ip netns)
set -euo pipefail
BUILD=$(cd "${1:?usage: netns.sh BUILD_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
CLI="$BUILD/dnnpress"
tag=dp$$
NS_S=${tag}s NS_1=${tag}w1 NS_2=${tag}w2
tmp=$(mktemp -d)
cleanup() {
  for ns in "$NS_1" "$NS_2" "$NS_S"; do
    pids=$(ip netns pids "$ns" 2> /dev/null || true)
    [ -n "$pids" ] && kill -KILL $pids 2> /dev/null || true
    ip netns del "$ns" 2> /dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "netns: FAIL: $*" >&2; for f in "$tmp"/*.log; do echo "--- $f" >&2; tail -12 "$f" >&2; done; exit 1; }
if ! ip netns add "$NS_S" 2> "$tmp/ns.err"; then
  fail "cannot create a network namespace (root needed): $(cat "$tmp/ns.err")"
fi
ip netns add "$NS_1"
ip netns add "$NS_2"

# Server side .1, worker side .2 of a /30 per worker.
link() { # WORKER_NS NET
  ip link add "${tag}$2s" type veth peer name "${tag}$2w"
  ip link set "${tag}$2s" netns "$NS_S"
  ip link set "${tag}$2w" netns "$1"
  ip -n "$NS_S" addr add "169.254.$2.1/30" dev "${tag}$2s"
  ip -n "$1" addr add "169.254.$2.2/30" dev "${tag}$2w"
  ip -n "$NS_S" link set "${tag}$2s" up
  ip -n "$1" link set "${tag}$2w" up
  ip -n "$1" link set lo up
}
ip -n "$NS_S" link set lo up
link "$NS_1" 201
link "$NS_2" 202

cd "$tmp"
. "$HERE/test_ca.sh"
mkca ca
mkcert server ca "IP:127.0.0.1,IP:169.254.201.1,IP:169.254.202.1"

PORT=8443
ADMIN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export DNNPRESS_CONFIG=$tmp/cli.json DNNPRESS_CA=$tmp/ca.pem
unset DNNPRESS_TOKEN DNNPRESS_SERVER
in_s() { ip netns exec "$NS_S" "$@"; }
DNNPRESS_ADMIN_TOKEN=$ADMIN ip netns exec "$NS_S" "$BUILD/dnnpress-server" \
  --listen "0.0.0.0:$PORT" --data-dir data --tls-cert server.pem --tls-key server.key \
  --lease-s 4 > server.log 2>&1 &
disown
URL=https://127.0.0.1:$PORT
in_s "$CLI" --server "$URL" health --wait 20 > /dev/null || fail "server health"
TEAM=$(in_s "$CLI" --server "$URL" --token "$ADMIN" team create netns)
TOKEN=$(in_s "$CLI" --server "$URL" --token "$ADMIN" token create --team "$TEAM" --name t)
AGENT=$(in_s "$CLI" --server "$URL" --token "$ADMIN" token create --team "$TEAM" --scope agent)
in_s "$CLI" login --server "$URL" --token "$TOKEN" > /dev/null

worker() { # NS NET NAME
  DNNPRESS_TOKEN=$AGENT DNNPRESS_LIMIT_TRAIN=1500 DNNPRESS_LIMIT_TEST=300 OMP_NUM_THREADS=1 \
    ip netns exec "$1" "$BUILD/dnnpress-worker" serve --server "https://169.254.$2.1:$PORT" \
    --ca ca.pem --cache-dir "cache-$3" --name "$3" --wait-s 2 --threads 1 > "$3.log" 2>&1 &
  disown # killed with its namespace: no job-control notice
}
worker "$NS_1" 201 w1
# The namespaces really are apart: from worker 2's, the server's other
# address and loopback port are unreachable.
if ip netns exec "$NS_2" curl -s -m 2 --cacert ca.pem "https://169.254.201.1:$PORT/healthz" \
  > /dev/null 2>&1; then
  fail "worker 2's namespace reaches worker 1's link"
fi

MODEL=$(in_s "$CLI" upload model --arch lenet5 --name lenet5)
DATASET=$(in_s "$CLI" upload dataset --builtin fashion-mnist --name fmnist)
cat > job.json << JSON
{"name": "netns", "model_id": "$MODEL", "dataset_id": "$DATASET",
 "pretrain": {"epochs": 1, "seed": 1},
 "spec": {"admm": {"iters": 6, "epochs_per_iter": 1}, "retrain": {"epochs": 1},
          "layers": [{"match": "*", "prune": {"scheme": "irregular", "rate": 4}}]},
 "export": {"format": "onnx"}}
JSON
JOB=$(in_s "$CLI" submit job.json)
in_s "$CLI" watch "$JOB" > watch.log 2>&1 &
disown
for _ in $(seq 1 600); do
  grep -q "compress: checkpoint uploaded" watch.log && break
  sleep 0.2
done
grep -q "compress: checkpoint uploaded" watch.log || fail "worker 1 never uploaded a compress checkpoint"
grep -q "registered as" w1.log || fail "worker 1 did not register across the veth"

# Cut worker 1 off and kill everything in its namespace; start worker 2.
ip -n "$NS_S" link set "${tag}201s" down
kill -KILL $(ip netns pids "$NS_1") 2> /dev/null || true
worker "$NS_2" 202 w2
wait_s=0
until grep -q "^job $JOB succeeded" watch.log; do
  sleep 1
  wait_s=$((wait_s + 1))
  [ $wait_s -lt 600 ] || fail "the job did not finish on worker 2"
  grep -q "^job $JOB \(failed\|cancelled\)" watch.log && fail "the job did not succeed"
done
grep -q "compress of job $JOB, attempt 2" w2.log || fail "worker 2 did not take over the compress task"
# Resumed, not restarted: the stream's compress epochs of attempt 2 begin
# right after the last checkpoint attempt 1 uploaded.
in_s curl -sN -m 20 --cacert ca.pem -H "Authorization: Bearer $TOKEN" \
  "$URL/api/v1/jobs/$JOB/events" > events.txt || true
resumed=$(/usr/bin/python3 - "$tmp/events.txt" << 'PY'
import json, sys
evs, cur = [], {}
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith("event: "):
        cur["event"] = line[7:]
    elif line.startswith("data: "):
        cur["data"] = json.loads(line[6:])
    elif not line and cur:
        evs.append(cur)
        cur = {}
ck = [e["data"]["checkpoint_epoch"] for e in evs if e.get("event") == "log"
      and e["data"].get("task") == "compress" and e["data"].get("kind") == "checkpoint"
      and e["data"].get("attempt", 1) == 1]
ep2 = [e["data"]["epoch"] for e in evs if e.get("event") == "epoch"
       and e["data"].get("task") == "compress" and e["data"].get("attempt") == 2]
assert ck and ep2, (ck, ep2)
assert min(ep2) == max(ck) + 1, (ck, ep2)
assert any(e.get("event") == "state" and e["data"].get("job_state") == "succeeded" for e in evs)
print(f"{max(ck)} {min(ep2)}")
PY
) || fail "the second attempt did not resume from the checkpoint: $(tail -c 600 "$tmp/events.txt")"
echo "netns: ok (server and two workers in separate network namespaces over TLS; worker 1 cut off" \
  "after compress epoch ${resumed% *}'s checkpoint; worker 2 resumed at epoch ${resumed#* } and finished the job)"
