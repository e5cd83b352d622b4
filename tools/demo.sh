#!/usr/bin/env bash
# make demo: the whole service on loopback. Starts dnnpress-server with one
# local worker, creates a team, then - as that team, through the dnnpress
# CLI - submits a LeNet-5 Fashion-MNIST ADMM job (train -> compress ->
# retrain -> export), follows it live, prints the report summary and runs
# the returned ONNX model in ONNX Runtime on raw [0, 1] pixels. Run from a
# terminal, it then leaves the server up for the dashboard at
# http://127.0.0.1:PORT/ (docs/dashboard.md), printing the token to sign in
# with, until Ctrl-C; otherwise (or with DEMO_NO_WAIT=1) it stops the
# server. The demo spec is short so that it ends within a few minutes on
# 2 cores: a 3-epoch pretraining and 3 ADMM + 1 retraining epochs on the
# first DEMO_LIMIT_TRAIN (12000) images.
set -euo pipefail
BUILD=${1:?usage: demo.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
DEMO=build/demo
PORT=${DEMO_PORT:-8080}
URL=http://127.0.0.1:$PORT
CLI="$BUILD/dnnpress"
rm -rf "$DEMO" && mkdir -p "$DEMO"
export DNNPRESS_CONFIG=$PWD/$DEMO/cli-config.json
unset DNNPRESS_TOKEN DNNPRESS_SERVER
ADMIN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

if "$CLI" --server "$URL" health > /dev/null 2>&1; then
  echo "demo: something already answers on $URL; set DEMO_PORT to another port" >&2
  exit 1
fi

echo "demo: starting dnnpress-server on $URL with 1 local worker (log: $DEMO/server.log)"
DNNPRESS_ADMIN_TOKEN=$ADMIN DNNPRESS_LIMIT_TRAIN=${DEMO_LIMIT_TRAIN:-12000} \
DNNPRESS_LIMIT_TEST=${DEMO_LIMIT_TEST:-2000} \
  setsid "$BUILD/dnnpress-server" --listen "127.0.0.1:$PORT" --data-dir "$DEMO/data" \
    --local-workers 1 > "$DEMO/server.log" 2>&1 &
SERVER_PID=$!
stop_server() {
  if kill -0 "$SERVER_PID" 2> /dev/null; then
    echo "demo: stopping the server"
    kill -TERM "$SERVER_PID" 2> /dev/null || true
    for _ in $(seq 1 150); do kill -0 "$SERVER_PID" 2> /dev/null || break; sleep 0.1; done
    kill -KILL -- "-$SERVER_PID" 2> /dev/null || true
  fi
}
trap stop_server EXIT
"$CLI" --server "$URL" health --wait 15 > /dev/null

TEAM=$("$CLI" --server "$URL" --token "$ADMIN" team create demo)
TOKEN=$("$CLI" --server "$URL" --token "$ADMIN" token create --team "$TEAM" --name demo)
"$CLI" login --server "$URL" --token "$TOKEN"
MODEL=$("$CLI" upload model --arch lenet5 --name lenet5)
DATASET=$("$CLI" upload dataset --builtin fashion-mnist --name fashion-mnist)
cat > "$DEMO/job.json" <<JSON
{
  "name": "lenet5-fashion-admm",
  "model_id": "$MODEL",
  "dataset_id": "$DATASET",
  "pretrain": {"epochs": 3, "lr": 0.01, "batch": 64, "seed": 1},
  "spec": {
    "admm": {"iters": 3, "epochs_per_iter": 1, "rho": 1e-3, "rho_factor": 1.5},
    "retrain": {"epochs": 1},
    "layers": [{"match": "conv*", "prune": {"scheme": "irregular", "rate": 5}},
               {"match": "fc*", "prune": {"scheme": "irregular", "rate": 20}}]
  },
  "export": {"format": "onnx"}
}
JSON
echo "demo: submitting $DEMO/job.json (model $MODEL, dataset $DATASET) and watching it"
JOB=$("$CLI" submit "$DEMO/job.json")
"$CLI" watch "$JOB" || { "$CLI" status "$JOB"; exit 1; }
echo
"$CLI" report "$JOB"
"$CLI" download "$JOB" --dir "$DEMO/artifacts" > /dev/null
echo
# The returned ONNX model carries its input normalisation (leading Sub/Div
# nodes): ONNX Runtime on raw pixels scaled to [0, 1] reaches the report's
# test accuracy on the same test images.
if [ -d tests/ort/node_modules/onnxruntime-node ]; then
  /usr/bin/python3 tests/ort/accuracy.py "$DEMO/artifacts/model.onnx" "${DEMO_LIMIT_TEST:-2000}" \
    "$DEMO/artifacts/report.json" | sed 's/^/demo: model.onnx: /'
else
  echo "demo: (make deps installs ONNX Runtime into tests/ort to check model.onnx on raw pixels)"
fi
echo "demo: artifacts (model, report, ONNX) in $DEMO/artifacts/"
# From a terminal the server stays up for the dashboard until Ctrl-C; a
# non-interactive run (CI, a pipe) stops here as before.
if [ -t 0 ] && [ -t 1 ] && [ -z "${DEMO_NO_WAIT:-}" ]; then
  echo
  echo "demo: the dashboard is at $URL/ - sign in with this team token:"
  echo
  echo "    $TOKEN"
  echo
  echo "demo: the server keeps running (log: $DEMO/server.log); press Ctrl-C to stop it"
  trap 'echo; stop_server; exit 0' INT TERM
  while kill -0 "$SERVER_PID" 2> /dev/null; do sleep 1; done
  echo "demo: the server exited (see $DEMO/server.log)"
  exit 1
fi
echo "demo: the dashboard was at $URL/ while the server ran (make demo from a terminal keeps it up)"
