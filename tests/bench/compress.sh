#!/usr/bin/env bash
# ADMM against the magnitude-pruning baseline at the same epoch budget, on
# Fashion-MNIST (docs/benchmarks.md, "ADMM"). One run prints the whole table;
# every row states its budget and wall time.
#
#   tests/bench/compress.sh [WORKER]     default build/release/dnnpress-worker
#
# Rows (ids in brackets, each followed by -bBUDGET in the output; ROWS=REGEX keeps the
# rows whose id matches):
#   dense models, trained by the engine (or by PyTorch and imported through ONNX)
#   [mlp-R-sS-METHOD-own]   lenet-300-100, irregular pruning at R x (RATES), seeds MLP_SEEDS,
#                           each method with its own allocation: ADMM sensitivity +
#                           annealing (auto), magnitude one global threshold
#   [mlp-R-sS-admm-magrates] ADMM with the per-layer rates the magnitude row reached, and
#   [mlp-R-sS-magnitude-admmrates] magnitude with ADMM's: the same per-layer rates
#   [lenet5-...]            the same for lenet5 (seed 1 at every rate, LENET5_SEEDS at 40x;
#                           the same-rate pairs at SWAP_LENET5 only: a lenet5 row costs
#                           about 13 lenet-300-100 rows)
#   [torch-lenet5-40-...]   lenet5 trained by PyTorch (tests/bench/torch_train.py),
#                           exported to ONNX and compressed from the .onnx file
#   [lenet5-q-Q-METHOD]     binary, ternary, 4-bit weights on every layer
#   [lenet5-pq-R-Q-METHOD]  pruning at QUANT_RATE x + quantization (storage counts index bits)
#   [resnet-pc-METHOD]      resnet20-fmnist: 8 patterns of 4 taps + connectivity 3.6
#   [resnet-filter-METHOD]  resnet20-fmnist: half the filters of every block's first
#                           conv (about 2x fewer FLOPs in the blocks), purified
#
# Rows run in LANES parallel 1-thread lanes. Each finished row is appended to
# OUT/results.jsonl and skipped by the next run (delete a line to redo it).
#
# Environment (defaults in brackets):
#   RATES [10 20 40 80 160]  MLP_SEEDS [1 2 3]  LENET5_SEEDS [1 2]
#   BUDGET_MLP [40] BUDGET_LENET5 [16] BUDGET_RESNET [10]   epochs per row, both methods
#   EPI [2] RETRAIN [8]        ADMM epochs per iteration, retraining epochs (the budget sets
#                              the number of iterations) of lenet-300-100 (EPI_MLP,
#                              RETRAIN_MLP); EPI_LENET5 [1] RETRAIN_LENET5 [4] EPI_RESNET [1]
#                              RETRAIN_RESNET [4] for the shorter budgets (chosen by a
#                              lenet-300-100 sweep at 16 epochs, docs/benchmarks.md)
#   PRE_MLP [20] PRE_LENET5 [20] PRE_RESNET [10]   dense training epochs
#   LIMIT_RESNET [10000]       resnet20-fmnist trains on this many training images (dense
#                              and compressed; 0: all 60,000), tests on the whole test set
#   SWAP_LENET5 [40]           rates of lenet5's same-per-layer-rate rows
#   QUANT_RATE [80]  TARGET_RESIDUAL [0]  DISTILL [0] (1: distill from the dense model,
#                    temperature 4, weight 0.5; row ids get "-kd")
#   RHO RHO_FACTOR   ADMM's initial rho and growth (default: the spec's defaults)
#   TAG              appended to every row id (for ablations of the knobs above)
#   LANES [2]  OUT [build/bench/compress]  ROWS [.]
set -uo pipefail
cd "$(dirname "$0")/../.."
WORKER=${1:-build/release/dnnpress-worker}
RATES=${RATES:-10 20 40 80 160}
MLP_SEEDS=${MLP_SEEDS:-1 2 3}; LENET5_SEEDS=${LENET5_SEEDS:-1 2}
BUDGET_MLP=${BUDGET_MLP:-40}; BUDGET_LENET5=${BUDGET_LENET5:-16}; BUDGET_RESNET=${BUDGET_RESNET:-10}
EPI=${EPI:-2}; RETRAIN=${RETRAIN:-8}
EPI_MLP=${EPI_MLP:-$EPI}; EPI_LENET5=${EPI_LENET5:-1}; EPI_RESNET=${EPI_RESNET:-1}
RETRAIN_MLP=${RETRAIN_MLP:-$RETRAIN}; RETRAIN_LENET5=${RETRAIN_LENET5:-4}
RETRAIN_RESNET=${RETRAIN_RESNET:-4}
LIMIT_RESNET=${LIMIT_RESNET:-10000}; SWAP_LENET5=${SWAP_LENET5:-40}
PRE_MLP=${PRE_MLP:-20}; PRE_LENET5=${PRE_LENET5:-20}; PRE_RESNET=${PRE_RESNET:-10}
QUANT_RATE=${QUANT_RATE:-80}; TARGET_RESIDUAL=${TARGET_RESIDUAL:-0}; DISTILL=${DISTILL:-0}
RHO=${RHO:-}; RHO_FACTOR=${RHO_FACTOR:-}; TAG=${TAG:-}
LANES=${LANES:-2}; OUT=${OUT:-build/bench/compress}; ROWS=${ROWS:-.}
DATA=idx:/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
export WORKER EPI RETRAIN QUANT_RATE TARGET_RESIDUAL DISTILL RHO RHO_FACTOR OUT DATA PY
export PRE_MLP PRE_LENET5 PRE_RESNET LIMIT_RESNET
export EPI_MLP EPI_LENET5 EPI_RESNET RETRAIN_MLP RETRAIN_LENET5 RETRAIN_RESNET
mkdir -p "$OUT/rows"
RESULTS="$OUT/results.jsonl"
touch "$RESULTS"
KD="$TAG"; [ "$DISTILL" = 1 ] && KD="-kd$TAG"

# ---- The rows ------------------------------------------------------------------
# id model seed method alloc target quant scheme budget
rows_own() {
  for r in $RATES; do
    for s in $MLP_SEEDS; do
      for m in admm magnitude; do echo "mlp-$r-s$s-$m-own$KD lenet-300-100 $s $m own $r none irregular $BUDGET_MLP"; done
    done
    for m in admm magnitude; do echo "lenet5-$r-s1-$m-own$KD lenet5 1 $m own $r none irregular $BUDGET_LENET5"; done
  done
  for s in $LENET5_SEEDS; do
    [ "$s" = 1 ] && continue
    for m in admm magnitude; do echo "lenet5-40-s$s-$m-own$KD lenet5 $s $m own 40 none irregular $BUDGET_LENET5"; done
  done
  for m in admm magnitude; do echo "torch-lenet5-40-s1-$m-own$KD torch-lenet5 1 $m own 40 none irregular $BUDGET_LENET5"; done
  for q in binary ternary 4; do
    for m in admm magnitude; do echo "lenet5-q-$q-$m$KD lenet5 1 $m own 1 $q irregular $BUDGET_LENET5"; done
  done
  for q in ternary 4; do
    for m in admm magnitude; do echo "lenet5-pq-$QUANT_RATE-$q-$m$KD lenet5 1 $m own $QUANT_RATE $q irregular $BUDGET_LENET5"; done
  done
  for m in admm magnitude; do
    echo "resnet-pc-$m$KD resnet20-fmnist 1 $m own 1 none pattern $BUDGET_RESNET"
    echo "resnet-filter-$m$KD resnet20-fmnist 1 $m own 2 none filter $BUDGET_RESNET"
  done
}

# The same per-layer rates: each method on the rates the other's own row reached.
rows_swapped() {
  rows_own | while read -r id model seed method alloc target quant scheme budget; do
    [ "$quant" = none ] && [ "$scheme" = irregular ] || continue
    case "$model" in
      lenet-300-100) ;;
      lenet5) [[ " $SWAP_LENET5 " == *" $target "* ]] || continue ;;
      *) continue ;; # the PyTorch model's rows compare the two sources, not allocations
    esac
    if [ "$method" = admm ]; then
      echo "${id/admm-own/magnitude-admmrates} $model $seed magnitude rates:${id} $target none irregular $budget"
    else
      echo "${id/magnitude-own/admm-magrates} $model $seed admm rates:${id} $target none irregular $budget"
    fi
  done
}

# ---- Dense models ----------------------------------------------------------------
dense_path() { # model seed
  case "$1" in
    torch-lenet5) echo "$OUT/dense_torch-lenet5_s$2_e$PRE_LENET5.onnx" ;;
    lenet-300-100) echo "$OUT/dense_$1_s$2_e$PRE_MLP.safetensors" ;;
    lenet5) echo "$OUT/dense_$1_s$2_e$PRE_LENET5.safetensors" ;;
    *) echo "$OUT/dense_$1_s$2_e${PRE_RESNET}_n$LIMIT_RESNET.safetensors" ;;
  esac
}
export -f dense_path

limit_flags() { # model: the training-set limit of its rows
  [ "$1" = resnet20-fmnist ] && [ "$LIMIT_RESNET" -gt 0 ] && echo "--limit-train $LIMIT_RESNET"
  return 0
}
export -f limit_flags

pretrain() { # model seed
  local f; f=$(dense_path "$1" "$2")
  [ -s "$f" ] && return 0
  local t0=$SECONDS
  case "$1" in
    torch-lenet5)
      $PY tests/bench/torch_train.py --model lenet5 --data "$DATA" --epochs "$PRE_LENET5" \
          --threads 1 --seed "$2" --export-onnx "$f.tmp" > "$f.json" 2> "$f.log" && mv "$f.tmp" "$f" ;;
    *)
      local e=$PRE_RESNET
      [ "$1" = lenet-300-100 ] && e=$PRE_MLP
      [ "$1" = lenet5 ] && e=$PRE_LENET5
      "$WORKER" train --model "$1" --data "$DATA" --epochs "$e" --seed "$2" --threads 1 \
          $(limit_flags "$1") --out "$f.tmp.safetensors" --quiet > "$f.json" 2> "$f.log" && mv "$f.tmp.safetensors" "$f" ;;
  esac
  echo "compress-bench: dense $1 seed $2: $(tail -1 "$f.json" | cut -c1-120) ($((SECONDS - t0)) s)" >&2
}
export -f pretrain

# ---- One row -----------------------------------------------------------------------
spec() { # method alloc target quant scheme budget seed [rates-report]
  $PY - "$@" <<'PY'
import json, os, sys
method, alloc, r, quant, scheme, budget, seed = sys.argv[1:8]
r, budget = float(r), int(budget)
env = os.environ
s = {"method": method, "seed": int(seed), "budget": {"epochs": budget},
     "admm": {"epochs_per_iter": int(env["EPI"])}, "retrain": {"epochs": int(env["RETRAIN"])},
     "magnitude": {"steps": 4}}
if float(env["TARGET_RESIDUAL"]) > 0:
    s["admm"]["target_residual"] = float(env["TARGET_RESIDUAL"])
if env["RHO"]:
    s["admm"]["rho"] = float(env["RHO"])
if env["RHO_FACTOR"]:
    s["admm"]["rho_factor"] = float(env["RHO_FACTOR"])
if env["DISTILL"] == "1":
    s["distill"] = {"temperature": 4, "weight": 0.5}
def q(d):
    if quant in ("binary", "ternary"):
        d["quant"] = {"scheme": quant, "per_channel": quant == "binary"}
    elif quant != "none":
        d["quant"] = {"scheme": "kbit", "bits": int(quant), "per_channel": True}
    return d
if scheme == "pattern":
    s["layers"] = [{"match": "layer*.conv[12]", "prune": {"scheme": "pattern", "library_size": 8,
                                                      "connectivity": 3.6}}]
elif scheme == "filter":
    s["purify"] = True
    s["layers"] = [{"match": "layer*.conv1", "prune": {"scheme": "filter", "rate": r}}]
elif r <= 1:
    s["layers"] = [q({"match": "*"})]
elif alloc.startswith("rates:"):
    rep = json.load(open(sys.argv[8]))
    s["layers"] = [q({"match": l["name"], "prune": {"scheme": "irregular", "rate": max(1.0, l["rate"])}})
                   for l in rep["layers"]]
elif method == "admm":
    s["auto"] = {"rate": r}
    s["layers"] = [q({"match": "*", "prune": {"scheme": "irregular"}})]
else:
    s["magnitude"]["allocation"] = "global"
    s["layers"] = [q({"match": "*", "prune": {"scheme": "irregular", "rate": r}})]
print(json.dumps(s))
PY
}
export -f spec

run_row() { # one row line
  read -r id model seed method alloc target quant scheme budget <<< "$1"
  id="$id-b$budget" # the same row at another budget is another row
  grep -q "\"id\": \"$id\"" "$RESULTS" && return 0
  local dense; dense=$(dense_path "$model" "$seed")
  local rep="" d="$OUT/rows/$id"
  if [ "${alloc#rates:}" != "$alloc" ]; then
    rep="$OUT/rows/${alloc#rates:}-b$budget.report.json"
    [ -s "$rep" ] || { echo "compress-bench: $id: no report of ${alloc#rates:}-b$budget yet" >&2; return 0; }
  fi
  case "$model" in
    lenet-300-100) EPI=$EPI_MLP RETRAIN=$RETRAIN_MLP ;;
    *lenet5) EPI=$EPI_LENET5 RETRAIN=$RETRAIN_LENET5 ;;
    *) EPI=$EPI_RESNET RETRAIN=$RETRAIN_RESNET ;;
  esac
  spec "$method" "$alloc" "$target" "$quant" "$scheme" "$budget" "$seed" $rep > "$d.spec.json" || return 0
  local t0=$SECONDS
  "$WORKER" compress --spec "$d.spec.json" --model "$dense" --data "$DATA" --threads 1 $(limit_flags "$model") \
      --report "$d.report.json" --quiet > "$d.json" 2> "$d.log"
  local rc=$?
  $PY - "$d.report.json" "$id" "$model" "$method" "$alloc" "$target" "$quant" "$budget" \
      "$((SECONDS - t0))" "$rc" <<'PY' >> "$RESULTS.tmp.$$"
import json, sys
path, rid, model, method, alloc, target, quant, budget, wall, rc = sys.argv[1:]
row = {"id": rid, "model": model, "method": method, "alloc": alloc.split(":")[0],
       "target": float(target), "quant": quant, "budget": int(budget), "wall_s": int(wall)}
if rc != "0":
    row["failed"] = True
else:
    r = json.load(open(path))
    t = r["totals"]
    row.update({"rate": t["rate"], "storage_rate": t["storage_rate"],
                "flops_rate": t["flops_dense"] / max(t["flops_effective"], 1),
                "test": r["final_test_accuracy"], "dense_test": r["dense_test_accuracy"],
                "val": r["final_val_accuracy"], "dense_val": r["dense_val_accuracy"],
                "epochs": r["epochs"], "admm_iterations": len(r["trace"]) if method == "admm" else 0,
                "layer_rates": {l["name"]: round(l["rate"], 2) for l in r["layers"]}})
print(json.dumps(row, sort_keys=True))
PY
  flock "$RESULTS" sh -c "cat '$RESULTS.tmp.$$' >> '$RESULTS'"
  rm -f "$RESULTS.tmp.$$"
  print_row "$(grep "\"id\": \"$id\"" "$RESULTS" | tail -1)"
}

print_row() { # a results line
  $PY - "$1" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
if r.get("failed"):
    print(f"{r['id']:<34} FAILED (budget {r['budget']} ep, {r['wall_s']} s)"); sys.exit()
print(f"{r['id']:<34} {r['rate']:7.1f}x {r['storage_rate']:8.1f}x {r['flops_rate']:6.2f}x "
      f"{100*r['val']:6.2f} {100*r['test']:6.2f} {100*r['dense_test']:6.2f} "
      f"{100*(r['test']-r['dense_test']):+6.2f} {r['epochs']:3d}/{r['budget']:<3d} {r['wall_s']:6d}")
PY
}
export -f run_row print_row
export RESULTS

header() {
  echo "row                                  rate   storage  flops   val%  test%  dense  dtest  ep/bud  wall s"
  echo "------------------------------------ ------- -------- ------- ------ ------ ------ ------ ------- ------"
}

# ---- Run -------------------------------------------------------------------------
own=$(rows_own | grep -E -- "^[^ ]*($ROWS)" || true)
swapped=$(rows_swapped | grep -E -- "^[^ ]*($ROWS)" || true)
# Dense models first (each once), then every row, then the same-rate rows
# (they read the own rows' reports).
printf '%s\n%s\n' "$own" "$swapped" | awk 'NF {print $2, $3}' | sort -u |
  xargs -P "$LANES" -L 1 bash -c 'pretrain "$0" "$1"'
header
[ -n "$own" ] && printf '%s\n' "$own" | xargs -P "$LANES" -d '\n' -I{} bash -c 'run_row "$1"' _ {}
[ -n "$swapped" ] && printf '%s\n' "$swapped" | xargs -P "$LANES" -d '\n' -I{} bash -c 'run_row "$1"' _ {}
echo
echo "Summary (rows of this selection; mean and spread over seeds where there are several):"
$PY - "$RESULTS" "$ROWS" <<'PY'
import json, re, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if re.search(sys.argv[2], r["id"]) and not r.get("failed")]
groups = {}
for r in rows:
    key = re.sub(r"-s\d+-", "-s*-", r["id"])
    groups.setdefault(key, []).append(r)
for key in sorted(groups):
    g = groups[key]
    d = [100 * (r["test"] - r["dense_test"]) for r in g]
    sd = statistics.stdev(d) if len(d) > 1 else 0.0
    print(f"  {key:<36} n={len(g)}  rate {statistics.mean(r['rate'] for r in g):7.1f}x  "
          f"test-dense {statistics.mean(d):+6.2f} +- {sd:4.2f} points  "
          f"budget {g[0]['budget']} ep  wall {statistics.mean(r['wall_s'] for r in g):6.0f} s")
PY
echo "(rate: weights / non-zeros over the constrained layers; storage: dense 32-bit over compressed"
echo " bits, index bits counted; flops: dense over effective MACs; val: held-out 10% of the training"
echo " set, which takes every decision; test: reported only; ep/bud: epochs spent / budget; wall: the"
echo " row alone, one thread, LANES=$LANES rows side by side)"
