#!/usr/bin/env bash
# The service over TLS (docs/operations.md, "TLS"): a throwaway CA made here
# with openssl, dnnpress-server serving https with a certificate it signed,
# one local worker (it gets the certificate as its trust anchor) and one
# worker started like a remote one with --ca, the CLI with --ca; two short
# jobs run to the end over https. And the refusals: no CA or the wrong CA
# (the certificate is not trusted, the message says to pass --ca), a
# certificate for another host name, plain http to the https port, a
# --tls-cert without --tls-key, a key that does not match.
set -euo pipefail
BUILD=$(cd "${1:?usage: tls.sh BUILD_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
CLI="$BUILD/dnnpress"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2> /dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2> /dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "tls: FAIL: $*" >&2; for f in "$tmp"/*.log; do echo "--- $f" >&2; tail -15 "$f" >&2; done; exit 1; }

# ---- a CA, a server certificate for localhost/127.0.0.1, a rogue CA ---------
cd "$tmp"
. "$HERE/test_ca.sh"
mkca ca
mkca rogue
mkcert server ca "DNS:localhost,IP:127.0.0.1"
mkcert other ca "DNS:elsewhere.example"

port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ADMIN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export DNNPRESS_CONFIG=$tmp/cli.json DNNPRESS_LIMIT_TRAIN=600 DNNPRESS_LIMIT_TEST=200
unset DNNPRESS_TOKEN DNNPRESS_SERVER DNNPRESS_CA

# ---- flags that cannot work are refused before anything starts --------------
out=$("$BUILD/dnnpress-server" --tls-cert server.pem --data-dir d0 2>&1) && fail "--tls-cert alone started"
grep -q -- "--tls-cert needs --tls-key" <<< "$out" || fail "--tls-cert alone: '$out'"
P=$(port)
out=$(DNNPRESS_ADMIN_TOKEN=$ADMIN timeout 20 "$BUILD/dnnpress-server" --listen "127.0.0.1:$P" \
  --data-dir d1 --tls-cert server.pem --tls-key other.key 2>&1) && fail "a mismatched key started"
grep -q "do not match" <<< "$out" || fail "mismatched key: '$out'"
out=$(DNNPRESS_ADMIN_TOKEN=$ADMIN timeout 20 "$BUILD/dnnpress-server" --listen "127.0.0.1:$P" \
  --data-dir d1 --tls-cert ca.csr.missing --tls-key server.key 2>&1) && fail "a missing cert started"
grep -q -- "--tls-cert ca.csr.missing: cannot open" <<< "$out" || fail "missing cert: '$out'"

# ---- the server over https with one local worker ---------------------------
P=$(port)
URL=https://127.0.0.1:$P
DNNPRESS_ADMIN_TOKEN=$ADMIN "$BUILD/dnnpress-server" --listen "127.0.0.1:$P" --data-dir data \
  --tls-cert server.pem --tls-key server.key --local-workers 1 > server.log 2>&1 &
pids+=($!)
"$CLI" --server "$URL" --ca ca.pem health --wait 20 > /dev/null || fail "health over https"
grep -q "listening on https://" server.log || fail "the server does not say https"

# Refusals: no CA (the system store does not know ours), a rogue CA, plain http.
out=$("$CLI" --server "$URL" health 2>&1) && fail "no --ca was trusted"
grep -q -- "--ca FILE" <<< "$out" || fail "no --ca: the message does not say what to do: '$out'"
out=$("$CLI" --server "$URL" --ca rogue.pem health 2>&1) && fail "a rogue CA was trusted"
grep -qi "certificate" <<< "$out" || fail "rogue CA: '$out'"
out=$("$CLI" --server "http://127.0.0.1:$P" health 2>&1) && fail "plain http answered on the https port"

TEAM=$("$CLI" --server "$URL" --ca ca.pem --token "$ADMIN" team create tls)
TOKEN=$("$CLI" --server "$URL" --ca ca.pem --token "$ADMIN" token create --team "$TEAM" --name t)
AGENT=$("$CLI" --server "$URL" --ca ca.pem --token "$ADMIN" token create --shared --name remote)
"$CLI" login --server "$URL" --token "$TOKEN" --ca ca.pem > /dev/null || fail "login with --ca"
grep -q "\"ca\": \"$tmp/ca.pem\"" cli.json || fail "login did not store the CA: $(cat cli.json)"

# A worker started like one on another machine: its own token and --ca.
DNNPRESS_TOKEN=$AGENT "$BUILD/dnnpress-worker" serve --server "$URL" --ca ca.pem \
  --cache-dir wcache --name remote --wait-s 2 > worker.log 2>&1 &
pids+=($!)
# The same worker with the rogue CA never registers; it says why.
DNNPRESS_TOKEN=$AGENT timeout 4 "$BUILD/dnnpress-worker" serve --server "$URL" --ca rogue.pem \
  --cache-dir wcache2 --name rogue > rogue.log 2>&1 || true
grep -qi "certificate" rogue.log || fail "a worker with the wrong CA does not say why"
# A certificate that names another host: refused even with the right CA.
P2=$(port)
DNNPRESS_ADMIN_TOKEN=$ADMIN "$BUILD/dnnpress-server" --listen "127.0.0.1:$P2" --data-dir data2 \
  --tls-cert other.pem --tls-key other.key > server2.log 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do grep -qs "listening on" server2.log && break; sleep 0.1; done
out=$("$CLI" --server "https://127.0.0.1:$P2" --ca ca.pem health 2>&1) && fail "a certificate for another host was accepted"
grep -qi "certificate\|name" <<< "$out" || fail "wrong host: '$out'"

# ---- two short jobs over https: both workers register and work --------------
MODEL=$("$CLI" upload model --arch lenet5 --name lenet5)
DATASET=$("$CLI" upload dataset --builtin fashion-mnist --name fmnist)
cat > job.json << JSON
{"name": "tls", "model_id": "$MODEL", "dataset_id": "$DATASET",
 "pretrain": {"epochs": 1, "seed": 1},
 "spec": {"admm": {"iters": 1, "epochs_per_iter": 1}, "retrain": {"epochs": 1},
          "layers": [{"match": "*", "prune": {"scheme": "irregular", "rate": 4}}]},
 "export": {"format": "onnx"}}
JSON
J1=$("$CLI" submit job.json)
J2=$("$CLI" submit job.json)
timeout 600 "$CLI" watch "$J1" > watch1.log 2>&1 || fail "job $J1 over https"
timeout 600 "$CLI" watch "$J2" > watch2.log 2>&1 || fail "job $J2 over https"
"$CLI" download "$J1" --dir out > /dev/null || fail "download over https"
[ -s out/model.onnx ] || fail "no ONNX artifact"
workers=$(curl -sf --cacert ca.pem -H "Authorization: Bearer $ADMIN" "$URL/api/v1/workers")
/usr/bin/python3 - "$workers" << 'PY' || fail "both workers did not register over https: $workers"
import json, sys
w = json.loads(sys.argv[1])
w = w["items"]
names = {x.get("name", "") for x in w}
assert "remote" in names, names
assert len(names) >= 2, names   # the local worker (named after the host) too
PY
echo "tls: ok (https with a private CA: 2 jobs, local and remote-style workers; 7 refusals checked)"
