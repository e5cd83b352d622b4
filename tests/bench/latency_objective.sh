#!/usr/bin/env bash
# auto.objective "latency" against "params" on lenet5 / Fashion-MNIST, on
# this machine as the device (docs/benchmarks.md, "Latency-aware rates").
#
#   tests/bench/latency_objective.sh [WORKER_BINARY]   default build/release/dnnpress-worker
#
# 1. A dense lenet5 (train, EPOCHS, seed 1).
# 2. The latency table, built by the product's own measurement
#    (`dnnpress-worker latency`, the code a device's latency task runs,
#    docs/api.md "Latency tables"): for every rate R of TABLE_RATES the model
#    pruned to R on every layer the spec's rule prunes (its projection, no
#    retraining: latency depends on the sparsity, not on the accuracy),
#    compiled (--target native, each layer dense, CSR or bitmask by the
#    compiler's own break-even, as a job would ship it), built and timed with
#    the bundle's bench (RUNS runs, 1 thread); each layer's min_ms at R is
#    its point.
# 3. Two compress runs at the same auto.rate TARGET and budget, params and
#    latency (--latency-table), then each compiled and timed the same way.
# Prints the table and one JSON line per run: accuracy, rates, latency.
#
# Environment: EPOCHS=2 TARGET=8 RUNS=300 TABLE_RATES="1 2 4 8 16 32 64"
#   LIMIT_TRAIN=20000 ADMM_ITERS=2 OUT=build/bench/latobj PYTHON=/usr/bin/python3
set -euo pipefail
cd "$(dirname "$0")/../.."
WORKER=${1:-build/release/dnnpress-worker}
EPOCHS=${EPOCHS:-2}
TARGET=${TARGET:-8}
RUNS=${RUNS:-300}
TABLE_RATES=${TABLE_RATES:-"1 2 4 8 16 32 64"}
LIMIT_TRAIN=${LIMIT_TRAIN:-20000}
ADMM_ITERS=${ADMM_ITERS:-2}
OUT=${OUT:-build/bench/latobj}
PY=${PYTHON:-/usr/bin/python3}
DATA=idx:/usr/share/datasets/fashion-mnist
mkdir -p "$OUT"

if [ ! -f "$OUT/dense.safetensors" ]; then
  "$WORKER" train --model lenet5 --data "$DATA" --epochs "$EPOCHS" --batch 64 --lr 0.01 \
    --momentum 0.9 --wd 5e-4 --seed 1 --threads 2 --out "$OUT/dense.safetensors" >"$OUT/train.log"
fi

# bench_of MODEL NAME: compile, build, time; the bench JSON in $OUT/NAME.bench.json
bench_of() {
  rm -rf "$OUT/$2.bundle"
  "$WORKER" compile --model "$1" --out "$OUT/$2.bundle" --target native >"$OUT/$2.compile.log"
  make -s -C "$OUT/$2.bundle" >"$OUT/$2.make.log" 2>&1
  "$OUT/$2.bundle/bench" --runs "$RUNS" --warmup 30 --threads 1 >"$OUT/$2.bench.json"
}

cat >"$OUT/table-spec.json" <<SPEC
{"layers":[{"match":"*","prune":{"scheme":"irregular","rate":2}}]}
SPEC
"$WORKER" latency --model "$OUT/dense.safetensors" --spec "$OUT/table-spec.json" \
  --rates "$(echo $TABLE_RATES | tr ' ' ,)" --runs "$RUNS" --warmup 30 --arch lenet5 \
  --work-dir "$OUT/table" --out "$OUT/latency-table.json" >"$OUT/table.log" 2>&1
"$PY" - "$OUT" <<'PY'
import json, sys
t = json.load(open(sys.argv[1] + "/latency-table.json"))
for l in t["layers"]:
    print("table %-8s " % l["name"] + "  ".join("r%g %.4f ms" % p for p in zip(l["rates"], l["ms"])))
PY
# The dense bundle, timed as the runs below are.
bench_of "$OUT/dense.safetensors" "table-r1"

for obj in params latency; do
  extra=""
  lat=()
  if [ "$obj" = latency ]; then
    extra=',"device":{"name":"local"}'
    lat=(--latency-table "$OUT/latency-table.json")
  fi
  cat >"$OUT/$obj.json" <<SPEC
{"admm":{"iters":$ADMM_ITERS,"epochs_per_iter":1},"retrain":{"epochs":1},
 "auto":{"rate":$TARGET,"objective":"$obj","search_iters":3000,"eval_images":512$extra},
 "layers":[{"match":"*","prune":{"scheme":"irregular"}}]}
SPEC
  "$WORKER" compress --spec "$OUT/$obj.json" --model "$OUT/dense.safetensors" --data "$DATA" \
    --limit-train "$LIMIT_TRAIN" --threads 2 --quiet --out "$OUT/$obj.safetensors" \
    --report "$OUT/$obj.report.json" "${lat[@]}" >/dev/null
  bench_of "$OUT/$obj.safetensors" "$obj"
done
"$PY" - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
dense = json.load(open(out + "/table-r1.bench.json"))
print("dense: p50 %.4f ms min %.4f ms" % (dense["latency_ms"]["p50"], dense["latency_ms"]["min"]))
for obj in ("params", "latency"):
    rep = json.load(open("%s/%s.report.json" % (out, obj)))
    b = json.load(open("%s/%s.bench.json" % (out, obj)))
    au = rep.get("auto", {})
    row = {"objective": obj,
           "accuracy": rep.get("final_test_accuracy"),
           "dense_accuracy": rep.get("dense_test_accuracy"),
           "achieved_rate": au.get("achieved_rate"),
           "predicted_ms": au.get("predicted_ms"),
           "rates": {l["name"]: round(l["rate"], 2) for l in au.get("layers", [])},
           "latency_ms": b["latency_ms"],
           "layers_ms": {l["name"]: round(l["min_ms"], 4) for l in b["layers"]
                         if l["name"] in {x["name"] for x in au.get("layers", [])}},
           "formats": {l["name"]: l["format"] for l in b["layers"]
                       if l["name"] in {x["name"] for x in au.get("layers", [])}}}
    print(json.dumps(row))
PY
