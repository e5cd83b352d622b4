#!/usr/bin/env bash
# ADMM against the magnitude-pruning baseline on real Fashion-MNIST LeNet-5,
# side by side with the same epoch budget (docs/benchmarks.md, "Compression").
#
#   tests/bench/compress_lenet.sh [WORKER]     default build/release/dnnpress-worker
#
# Environment:
#   TARGETS="10 20 40 80 200"   overall rates to aim at (per-layer rates below)
#   ITERS=6 EPI=2 RETRAIN=4     ADMM iterations, epochs per iteration, retraining epochs;
#                               the baseline gets the same total (ITERS*EPI+RETRAIN)
#   RHO=1e-2 RHO_FACTOR=2      initial rho and its growth per ADMM iteration (cap 1)
#   PRETRAIN_EPOCHS=20          dense LeNet-5 training (reused from OUT if present)
#   ALLOC=auto                  per-layer rates: "auto" (ADMM: sensitivity + annealing;
#                               baseline: one global magnitude threshold) or "fixed"
#                               (the hand-set split below for both)
#   QUANT_RATE=200 QUANT=ternary  the pruning + quantization row (storage with index bits)
#   THREADS=2  OUT=build/bench/compress
set -uo pipefail
cd "$(dirname "$0")/../.."
WORKER=${1:-build/release/dnnpress-worker}
TARGETS=${TARGETS:-10 20 40 80 200}
ITERS=${ITERS:-6}; EPI=${EPI:-2}; RETRAIN=${RETRAIN:-4}
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-20}
RHO=${RHO:-1e-2}; RHO_FACTOR=${RHO_FACTOR:-2}
THREADS=${THREADS:-2}
ALLOC=${ALLOC:-auto}
QUANT_RATE=${QUANT_RATE:-200}; QUANT=${QUANT:-ternary}
OUT=${OUT:-build/bench/compress}
DATA=idx:/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
mkdir -p "$OUT"

dense="$OUT/lenet5_dense_e${PRETRAIN_EPOCHS}.safetensors"
if [ ! -s "$dense" ]; then
  echo "compress-bench: pretraining LeNet-5 for $PRETRAIN_EPOCHS epochs" >&2
  "$WORKER" train --model lenet5 --data "$DATA" --epochs "$PRETRAIN_EPOCHS" --seed 1 \
      --threads "$THREADS" --out "$dense" --quiet > "$OUT/pretrain.json" || exit 1
fi

# Per-layer rates for an overall target R: fc1 holds 93% of the weights, so
# it carries the rate; the small convolutions are pruned less, as in the
# ADMM papers' LeNet-5 configurations.
spec() { # method R quant iters epi retrain rho rho_factor alloc
  $PY - "$@" <<'PY'
import json, sys
method, r, quant, alloc = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[9]
def q(d):
    if quant in ("binary", "ternary"):
        d["quant"] = {"scheme": quant, "per_channel": True} if quant == "binary" else {"scheme": quant}
    elif quant != "none":
        d["quant"] = {"scheme": "kbit", "bits": int(quant), "per_channel": True}
    return d
def rule(match, rate):
    d = {"match": match}
    if rate > 1:
        d["prune"] = {"scheme": "irregular", "rate": rate}
    return q(d)
spec = {
    "method": method,
    "admm": {"iters": int(sys.argv[4]), "epochs_per_iter": int(sys.argv[5]), "rho": float(sys.argv[7]), "rho_factor": float(sys.argv[8]), "rho_max": 1.0},
    "retrain": {"epochs": int(sys.argv[6])},
    "magnitude": {"steps": 4}}
if r > 1 and alloc == "auto" and method == "admm":
    spec["auto"] = {"rate": r, "eval_images": 2000, "search_iters": 4000}
    spec["layers"] = [q({"match": "*", "prune": {"scheme": "irregular"}})]
elif r > 1 and alloc == "auto":
    spec["magnitude"]["allocation"] = "global"
    spec["layers"] = [q({"match": "*", "prune": {"scheme": "irregular", "rate": r}})]
else:
    spec["layers"] = [rule("conv1", max(1.0, min(r, 4.0)) if r > 1 else 1), rule("conv2", max(1.0, r / 2.5)),
                      rule("fc1", r * 1.05 if r > 1 else 1), rule("fc2", max(1.0, r / 4))]
print(json.dumps(spec))
PY
}

run() { # label method R quant
  local f="$OUT/$1_$2.json"
  spec "$2" "$3" "$4" "$ITERS" "$EPI" "$RETRAIN" "$RHO" "$RHO_FACTOR" "$ALLOC" > "$OUT/$1_$2.spec.json"
  "$WORKER" compress --spec "$OUT/$1_$2.spec.json" --model "$dense" --data "$DATA" \
      --threads "$THREADS" --report "$OUT/$1_$2.report.json" --quiet > "$f" || echo '{}' > "$f"
  $PY - "$f" "$1" "$2" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1] or "{}")
if not r:
    print(f"{sys.argv[2]:<12} | {sys.argv[3]:<9} | FAILED"); sys.exit()
print(f"{sys.argv[2]:<12} | {sys.argv[3]:<9} | {r['rate']:7.1f}x | {r['storage_rate']:8.1f}x | "
      f"{100*r['test_accuracy']:6.2f} | {100*r['dense_test_accuracy']:6.2f} | {r['epochs']:3d} | {r['wall_seconds']:6.0f}")
PY
}

echo "target       | method    | rate     | storage   | acc %  | dense  | ep  | wall s"
echo "-------------+-----------+----------+-----------+--------+--------+-----+-------"
for t in $TARGETS; do
  for m in admm magnitude; do run "${t}x" "$m" "$t" none; done
done
for m in admm magnitude; do run "binary" "$m" 1 binary; done
for m in admm magnitude; do run "${QUANT_RATE}x+$QUANT" "$m" "$QUANT_RATE" "$QUANT"; done
echo "(rate: weights / non-zeros over the constrained layers; storage: dense 32-bit over"
echo " compressed bits with index overhead; budget ITERS*EPI+RETRAIN = $((ITERS * EPI + RETRAIN)) epochs each;"
echo " rates: ALLOC=$ALLOC — auto: ADMM's per-layer rates by sensitivity + annealing, the baseline's by one"
echo " global magnitude threshold; fixed: conv1 min(R,4), conv2 R/2.5, fc1 1.05R, fc2 R/4 for both)"
