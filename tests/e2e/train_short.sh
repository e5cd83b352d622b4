#!/usr/bin/env bash
# A shortened real training run: LeNet-5 on the real Fashion-MNIST for a few
# epochs must reach at least 88% test accuracy, and the same seed must give
# the same numbers twice (on a subset, to keep it quick).
set -euo pipefail
WORKER=${1:?usage: train_short.sh WORKER_BINARY}
DATA=idx:/usr/share/datasets/fashion-mnist
EPOCHS=${TRAIN_SHORT_EPOCHS:-3}
MIN_ACC=0.88
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

field() { /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.readlines()[-1])[sys.argv[1]])' "$1"; }

echo "train_short: lenet5 on Fashion-MNIST, $EPOCHS epochs, 2 threads"
"$WORKER" train --model lenet5 --data "$DATA" --epochs "$EPOCHS" --threads 2 --seed 1 \
    --out "$tmp/lenet5.safetensors" > "$tmp/run.json"
acc=$(field test_accuracy < "$tmp/run.json")
ips=$(field train_images_per_second < "$tmp/run.json")
rss=$(field peak_rss_bytes < "$tmp/run.json")
echo "train_short: test_accuracy=$acc images/s=$ips peak_rss=$((rss / 1048576)) MB"
[ -s "$tmp/lenet5.safetensors" ] || { echo "train_short: FAIL: no checkpoint written"; exit 1; }

echo "train_short: determinism, two runs each of lenet5 (4096 images) and resnet20-cifar (256)"
for i in 1 2; do
  "$WORKER" train --model lenet5 --data "$DATA" --epochs 1 --threads 2 --seed 7 \
      --limit-train 4096 --limit-test 1000 --quiet > "$tmp/det$i.json"
done
# And through the oneDNN convolutions (ResNet-20's 16-channel layers).
for i in 1 2; do
  "$WORKER" train --model resnet20-cifar --synthetic 256 --epochs 1 --threads 2 --seed 3 \
      --quiet > "$tmp/res$i.json"
done
r1=$(field train_loss < "$tmp/res1.json"); r2=$(field train_loss < "$tmp/res2.json")
l1=$(field train_loss < "$tmp/det1.json"); l2=$(field train_loss < "$tmp/det2.json")
a1=$(field test_accuracy < "$tmp/det1.json"); a2=$(field test_accuracy < "$tmp/det2.json")

pass=0 fail=0
if /usr/bin/python3 -c "import sys; sys.exit(0 if float('$acc') >= $MIN_ACC else 1)"; then
  pass=$((pass + 1)); echo "ok: accuracy $acc >= $MIN_ACC"
else
  fail=$((fail + 1)); echo "FAIL: accuracy $acc < $MIN_ACC"
fi
if [ "$l1" = "$l2" ] && [ "$a1" = "$a2" ]; then
  pass=$((pass + 1)); echo "ok: same seed, same numbers ($l1, $a1)"
else
  fail=$((fail + 1)); echo "FAIL: same seed gave $l1/$a1 then $l2/$a2"
fi
if [ "$r1" = "$r2" ]; then
  pass=$((pass + 1)); echo "ok: resnet20-cifar through oneDNN, same seed, same loss ($r1)"
else
  fail=$((fail + 1)); echo "FAIL: resnet20-cifar same seed gave loss $r1 then $r2"
fi
# The compress command on the checkpoint just trained: a short ADMM run on
# a slice of the data must leave exactly the requested number of weights.
cat > "$tmp/spec.json" <<'JSON'
{"admm": {"iters": 1, "epochs_per_iter": 1}, "retrain": {"epochs": 1},
 "layers": [{"match": "fc1", "prune": {"scheme": "irregular", "rate": 20}},
            {"match": "conv2", "prune": {"scheme": "filter", "rate": 5}}]}
JSON
if "$WORKER" compress --spec "$tmp/spec.json" --model "$tmp/lenet5.safetensors" --data "$DATA" \
      --threads 2 --limit-train 4096 --limit-test 1000 --quiet --report "$tmp/report.json" \
      --out "$tmp/compressed.safetensors" > "$tmp/compress.json" &&
   /usr/bin/python3 - "$tmp/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = {x["name"]: x for x in r["layers"]}
assert l["fc1"]["nonzeros"] == round(400000 / 20), l["fc1"]["nonzeros"]
assert l["conv2"]["structure"]["zero_filters"] == 40, l["conv2"]["structure"]
assert r["final_test_accuracy"] > 0.5, r["final_test_accuracy"]
PY
then
  pass=$((pass + 1)); echo "ok: compress keeps exactly 1/20 of fc1 and 10 of conv2's 50 filters"
else
  fail=$((fail + 1)); echo "FAIL: compress (see $tmp/compress.json)"
fi

# kill -9 in the middle, then --resume: the result must be byte for byte
# the uninterrupted run's. The spec also purifies: conv2 keeps 10 of its 50
# filters, so the saved conv2 and fc1 tensors must shrink.
cat > "$tmp/spec2.json" <<'JSON'
{"admm": {"iters": 2, "epochs_per_iter": 1}, "retrain": {"epochs": 2}, "purify": true,
 "layers": [{"match": "fc1", "prune": {"scheme": "irregular", "rate": 20}},
            {"match": "conv2", "prune": {"scheme": "filter", "rate": 5}}]}
JSON
kill_after_checkpoint() { # command... ; kills it -9 once $tmp/state exists
  rm -f "$tmp/state"
  "$@" > /dev/null 2>&1 &
  local pid=$! n=0
  while [ ! -e "$tmp/state" ] && kill -0 "$pid" 2>/dev/null && [ $n -lt 2400 ]; do
    sleep 0.05; n=$((n + 1))
  done
  sleep 0.3
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cargs=(compress --spec "$tmp/spec2.json" --model "$tmp/lenet5.safetensors" --data "$DATA"
       --threads 2 --limit-train 4096 --limit-test 1000)
"$WORKER" "${cargs[@]}" --quiet --out "$tmp/ref.safetensors" --report "$tmp/ref.json" > /dev/null
kill_after_checkpoint "$WORKER" "${cargs[@]}" --checkpoint "$tmp/state" --out "$tmp/res.safetensors"
"$WORKER" "${cargs[@]}" --checkpoint "$tmp/state" --resume --out "$tmp/res.safetensors" \
    --report "$tmp/res.json" > /dev/null 2> "$tmp/resume.log"
# The kill must have landed inside the run (4 epochs): otherwise nothing was resumed.
if grep -Eq "resumed from .* [0-3] epochs done" "$tmp/resume.log" && cmp -s "$tmp/ref.safetensors" "$tmp/res.safetensors" &&
   /usr/bin/python3 - "$tmp/res.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = {x["name"]: (x["before"], x["after"]) for x in r["purification"]["layers"]}
assert p["conv2"] == ([50, 20, 5, 5], [10, 20, 5, 5]), p["conv2"]
assert p["fc1"] == ([500, 800], [500, 160]), p["fc1"]
assert abs(r["purification"]["test_accuracy"] - r["final_test_accuracy"]) < 1e-9, r["purification"]
PY
then
  pass=$((pass + 1))
  echo "ok: compress killed -9 ($(grep -o 'resumed from.*' "$tmp/resume.log" | head -1 | cut -c1-80)) and resumed = uninterrupted, byte for byte; purified conv2 50->10 filters, fc1 800->160 inputs"
else
  fail=$((fail + 1)); echo "FAIL: compress resume/purify (see $tmp/resume.log)"; cat "$tmp/resume.log" | tail -5
fi
targs=(train --model lenet5 --data "$DATA" --epochs 3 --threads 2 --seed 5 --limit-train 4096
       --limit-test 1000)
"$WORKER" "${targs[@]}" --quiet --out "$tmp/tref.safetensors" > /dev/null
kill_after_checkpoint "$WORKER" "${targs[@]}" --quiet --checkpoint "$tmp/state" \
    --out "$tmp/tres.safetensors"
"$WORKER" "${targs[@]}" --checkpoint "$tmp/state" --resume --out "$tmp/tres.safetensors" \
    > /dev/null 2> "$tmp/tresume.log"
if grep -Eq "resumed from .* after epoch [0-2]$" "$tmp/tresume.log" &&
   cmp -s "$tmp/tref.safetensors" "$tmp/tres.safetensors"; then
  pass=$((pass + 1))
  echo "ok: train killed -9 ($(grep -o 'resumed from.*' "$tmp/tresume.log" | sed 's|.*/||')) and resumed = uninterrupted, byte for byte"
else
  fail=$((fail + 1)); echo "FAIL: train resume (not resumed mid-run, or differs; see $tmp/tresume.log)"
fi
echo "train_short: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
