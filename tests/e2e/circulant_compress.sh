#!/usr/bin/env bash
# Block-circulant layers through `dnnpress-worker compress` (issue 15):
# lenet-300-100 trained briefly on a slice of Fashion-MNIST, then its fully
# connected layers made block-circulant (block 8) both ways in, on the same
# epochs: ADMM from the dense model (with 8-bit spectra) and from scratch.
# Each must write a checkpoint holding the vectors (circ_linear layers,
# (p, q, k) weights), a report whose parameter reduction is the exact
# ratio, and an accuracy well above chance (3x: these are 2 epochs on a
# 3000-image slice, not a benchmark).
set -euo pipefail
WORKER=${1:?usage: circulant_compress.sh WORKER_BINARY}
DATA=idx:/usr/share/datasets/fashion-mnist
LIMIT="--limit-train 3000 --limit-test 1000"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "circulant_compress: lenet-300-100, 1 epoch on 3000 images"
"$WORKER" train --model lenet-300-100 --data "$DATA" --epochs 1 --threads 2 --seed 1 $LIMIT \
    --quiet --out "$tmp/dense.safetensors" > /dev/null

pass=0 fail=0
for from in admm scratch; do
  bits=""
  [ "$from" = admm ] && bits=', "spectrum_bits": 8'
  cat > "$tmp/$from.json" <<JSON
{"admm": {"iters": 1, "epochs_per_iter": 1, "rho": 0.5}, "retrain": {"epochs": 1},
 "layers": [{"match": "fc*", "circulant": {"block": 8, "from": "$from"$bits}}]}
JSON
  if "$WORKER" compress --spec "$tmp/$from.json" --model "$tmp/dense.safetensors" --data "$DATA" \
        --threads 2 $LIMIT --quiet --report "$tmp/$from.report.json" \
        --out "$tmp/$from.safetensors" > "$tmp/$from.out" &&
     /usr/bin/python3 - "$tmp/$from.report.json" "$tmp/$from.safetensors" "$from" <<'PY'
import json, struct, sys
r = json.load(open(sys.argv[1]))
c = r["circulant"]
assert c["from"] == sys.argv[3] and c["converted"] and c["epochs"] == 2, c
# fc1 300x784, fc2 100x300, fc3 10x100 in blocks of 8: padded to 38x98, 13x38, 2x13 blocks.
dense = 300 * 784 + 100 * 300 + 10 * 100
stored = (38 * 98 + 13 * 38 + 2 * 13) * 8
assert c["dense_params"] == dense and c["stored_values"] == stored, c
assert abs(c["param_reduction"] - dense / stored) < 1e-4, c
l = {x["name"]: x for x in r["layers"]}
assert l["fc1"]["circulant"]["padded_rows"] == 4 and l["fc1"]["circulant"]["padding"]
assert l["fc1"]["bits"] == (8 if sys.argv[3] == "admm" else 32), l["fc1"]["bits"]
assert r["final_test_accuracy"] > 0.3, r["final_test_accuracy"]  # chance is 0.1
# The checkpoint stores the vectors, under circ_linear layers.
f = open(sys.argv[2], "rb")
n = struct.unpack("<Q", f.read(8))[0]
h = json.loads(f.read(n))
assert h["fc1.weight"]["shape"] == [38, 98, 8], h["fc1.weight"]["shape"]
assert "circ_linear" in json.dumps(h.get("__metadata__", {})), "no circ_linear in the graph"
print("  %s: test accuracy %.4f (dense %.4f), %.2fx fewer FC parameters"
      % (sys.argv[3], r["final_test_accuracy"], r["dense_test_accuracy"], c["param_reduction"]))
PY
  then
    pass=$((pass + 1)); echo "ok: from $from: circulant checkpoint and report"
  else
    fail=$((fail + 1)); echo "FAIL: from $from (see $tmp/$from.out)"
  fi
done
echo "circulant_compress: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
