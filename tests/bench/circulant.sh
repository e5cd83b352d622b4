#!/usr/bin/env bash
# Block-circulant networks against their dense models on Fashion-MNIST
# (issue 15; docs/benchmarks.md, "Block-circulant layers"). One run prints:
#
#   1. the layer time of the FFT form against the dense GEMM form (engine
#      kernels, one thread, batch 1 and 64, tests/bench/circ_layer.sh), with
#      the measured and the FLOP-model crossover;
#   2. the accuracy table: lenet-300-100 and lenet5 with their fully
#      connected layers block-circulant (k in K_FC), lstm-fmnist with both
#      LSTM matrices block-circulant (k in K_LSTM), each against its dense
#      model trained the same way (same recipe and epochs; for the LSTM also
#      a PyTorch nn.LSTM of the same size, trained the same way in this run),
#      and for one block size per model the ADMM conversion of the trained
#      dense model next to training the circulant model from scratch.
#
#   tests/bench/circulant.sh [WORKER]          default build/release/dnnpress-worker
#
# Rows run in LANES parallel 1-thread lanes (the peer: one thread too).
# Each finished row is appended to OUT/results.jsonl and skipped by the
# next run (delete a line to redo it).
#
# Environment (defaults in brackets):
#   K_FC ["4 8 16 32 64"]  K_LSTM ["4 8 16 32"]  K_ADMM_FC [32]  K_ADMM_LSTM [16]
#   E_MLP [20] E_LENET5 [4] E_LSTM [6]    epochs of every row of that model: the dense
#                                         model, the peer, circulant from scratch, and
#                                         ADMM's budget after the dense pretraining
#   OPT_LSTM [adam] LR_LSTM [0.002]       the LSTM rows' optimiser (all of them, peer too)
#   LIMIT_TRAIN [0]                       train on the first N images only (0: all 60000)
#   LIMIT_LSTM [0]                        the same for the lstm rows (a 1-thread LSTM epoch
#                                         of 60000 sequences takes about 40 s; 0: all)
#   LANES [2]  OUT [build/bench/circulant]  ROWS [.] (regex over row ids)  LAYER [1]
set -uo pipefail
cd "$(dirname "$0")/../.."
WORKER=${1:-build/release/dnnpress-worker}
K_FC=${K_FC:-4 8 16 32 64}; K_LSTM=${K_LSTM:-4 8 16 32}
K_ADMM_FC=${K_ADMM_FC:-32}; K_ADMM_LSTM=${K_ADMM_LSTM:-16}
E_MLP=${E_MLP:-20}; E_LENET5=${E_LENET5:-4}; E_LSTM=${E_LSTM:-6}
OPT_LSTM=${OPT_LSTM:-adam}; LR_LSTM=${LR_LSTM:-0.002}; LIMIT_TRAIN=${LIMIT_TRAIN:-0}
LIMIT_LSTM=${LIMIT_LSTM:-0}
LANES=${LANES:-2}; OUT=${OUT:-build/bench/circulant}; ROWS=${ROWS:-.}; LAYER=${LAYER:-1}
DATA=idx:/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
export WORKER E_MLP E_LENET5 E_LSTM OPT_LSTM LR_LSTM LIMIT_TRAIN LIMIT_LSTM OUT DATA PY
mkdir -p "$OUT/rows"
RESULTS="$OUT/results.jsonl"
touch "$RESULTS"
export RESULTS

echo "== bench-circulant on $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$LAYER" = 1 ]; then
  echo
  echo "---- 1. Layer time: FFT form against dense GEMM (engine kernels) ----"
  tests/bench/circ_layer.sh 256 512 1024 || echo "circ_layer failed"
fi

# ---- The rows ----------------------------------------------------------------
# id model kind block from epochs
#   kind: dense (engine), torch (PyTorch peer), circ (a compress run)
rows() {
  echo "mlp-dense lenet-300-100 dense 0 - $E_MLP"
  for k in $K_FC; do echo "mlp-k$k-scratch lenet-300-100 circ $k scratch $E_MLP"; done
  for k in $K_ADMM_FC; do echo "mlp-k$k-admm lenet-300-100 circ $k admm $E_MLP"; done
  echo "lenet5-dense lenet5 dense 0 - $E_LENET5"
  for k in $K_FC; do echo "lenet5-k$k-scratch lenet5 circ $k scratch $E_LENET5"; done
  for k in $K_ADMM_FC; do echo "lenet5-k$k-admm lenet5 circ $k admm $E_LENET5"; done
  echo "lstm-dense lstm-fmnist dense 0 - $E_LSTM"
  echo "lstm-torch lstm-fmnist torch 0 - $E_LSTM"
  for k in $K_LSTM; do echo "lstm-k$k-scratch lstm-fmnist circ $k scratch $E_LSTM"; done
  for k in $K_ADMM_LSTM; do echo "lstm-k$k-admm lstm-fmnist circ $k admm $E_LSTM"; done
}

# Training flags of a model's rows: the same for the engine, the peer and
# the retraining inside compress (the spec's optimizer section).
train_flags() { # model
  if [ "$1" = lstm-fmnist ]; then echo "--optim $OPT_LSTM --lr $LR_LSTM"; else echo ""; fi
}
export -f train_flags

limit() { # model
  local n=$LIMIT_TRAIN
  [ "$1" = lstm-fmnist ] && n=$LIMIT_LSTM
  [ "$n" -gt 0 ] && echo "--limit-train $n"
}
export -f limit

dense_path() { echo "$OUT/dense_$1_e$2.safetensors"; } # model epochs
export -f dense_path

spec() { # model block from epochs
  $PY - "$@" <<'PY'
import json, os, sys
model, k, frm, epochs = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
env = os.environ
match = "lstm" if model == "lstm-fmnist" else "fc*"
s = {"method": "admm", "seed": 1, "budget": {"epochs": epochs},
     "layers": [{"match": match, "circulant": {"block": k, "from": frm}}]}
# ADMM: iterations of one epoch, then retraining in the circulant form, half
# the budget each; scratch: the whole budget at retrain.lr.
s["admm"] = {"epochs_per_iter": 1}
s["retrain"] = {"epochs": max(1, epochs // 2)}
if model == "lstm-fmnist":
    s["retrain"]["lr"] = float(env["LR_LSTM"])
    s["admm"]["lr"] = float(env["LR_LSTM"])
    if env["OPT_LSTM"] == "adam":
        s["optimizer"] = {"type": "adam"}
print(json.dumps(s))
PY
}
export -f spec

run_row() { # one row line
  read -r id model kind block from epochs <<< "$1"
  id="$id-e$epochs"
  grep -q "\"id\": \"$id\"" "$RESULTS" && return 0
  local d="$OUT/rows/$id" t0=$SECONDS rc=0
  case "$kind" in
    dense)
      local f; f=$(dense_path "$model" "$epochs")
      # shellcheck disable=SC2046
      "$WORKER" train --model "$model" --data "$DATA" --epochs "$epochs" --seed 1 --threads 1 \
          $(train_flags "$model") $(limit "$model") --out "$f.tmp.safetensors" --quiet > "$d.json" 2> "$d.log" &&
        mv "$f.tmp.safetensors" "$f" || rc=1 ;;
    torch)
      local fl; fl=$(train_flags "$model")
      # shellcheck disable=SC2086
      OMP_NUM_THREADS=1 $PY tests/bench/torch_train.py --model "$model" --data "$DATA" \
          --epochs "$epochs" --threads 1 --seed 1 $fl $(limit "$model") \
          > "$d.json" 2> "$d.log" || rc=1 ;;
    circ)
      spec "$model" "$block" "$from" "$epochs" > "$d.spec.json"
      local dense; dense=$(dense_path "$model" "$epochs")
      [ -s "$dense" ] || { echo "circulant-bench: $id: no dense model $dense yet" >&2; return 0; }
      # shellcheck disable=SC2046
      "$WORKER" compress --spec "$d.spec.json" --model "$dense" --data "$DATA" --threads 1 \
          $(limit "$model") --report "$d.report.json" --out "$d.safetensors" --quiet > "$d.json" 2> "$d.log" || rc=1 ;;
  esac
  $PY - "$d" "$id" "$model" "$kind" "$block" "$from" "$epochs" "$((SECONDS - t0))" "$rc" \
      <<'PY' >> "$RESULTS.tmp.$$"
import json, sys
d, rid, model, kind, block, frm, epochs, wall, rc = sys.argv[1:]
row = {"id": rid, "model": model, "kind": kind, "block": int(block), "from": frm,
       "epochs": int(epochs), "wall_s": int(wall)}
if rc != "0":
    row["failed"] = True
elif kind in ("dense", "torch"):
    lines = [l for l in open(d + ".json") if l.strip().startswith("{")]
    r = json.loads(lines[-1])
    row.update({"test": r["test_accuracy"], "train_ips": r.get("train_images_per_second")})
else:
    r = json.load(open(d + ".report.json"))
    c = r["circulant"]
    row.update({"test": r["final_test_accuracy"], "dense_test": r.get("dense_test_accuracy"),
                "dense_values": c.get("dense_params"), "stored_values": c.get("stored_values"),
                "param_reduction": c.get("param_reduction"), "flops_dense": c.get("flops_dense"),
                "flops_fft": c.get("flops_fft"), "epochs_spent": r.get("epochs")})
print(json.dumps(row, sort_keys=True))
PY
  flock "$RESULTS" sh -c "cat '$RESULTS.tmp.$$' >> '$RESULTS'"
  rm -f "$RESULTS.tmp.$$"
  echo "circulant-bench: $id done in $((SECONDS - t0)) s (rc $rc)" >&2
}
export -f run_row

sel=$(rows | grep -E -- "^[^ ]*($ROWS)" || true)
# Dense models and peers first (the circulant rows start from the dense
# checkpoints), then every circulant row.
printf '%s\n' "$sel" | awk '$3 != "circ"' | xargs -P "$LANES" -d '\n' -I{} bash -c 'run_row "$1"' _ {}
printf '%s\n' "$sel" | awk '$3 == "circ"' | xargs -P "$LANES" -d '\n' -I{} bash -c 'run_row "$1"' _ {}

echo
echo "---- 2. Accuracy against the dense model trained the same way ----"
$PY - "$RESULTS" "$ROWS" <<'PY'
import json, re, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if re.search(sys.argv[2], r["id"])]
dense = {(r["model"], r["epochs"]): r for r in rows if r["kind"] == "dense" and not r.get("failed")}
print(f"{'row':<24} {'block':>5} {'from':>7} {'ep':>3} {'test%':>7} {'dense%':>7} {'d pts':>6} "
      f"{'params':>9} {'stored':>8} {'reduct':>7} {'FLOPs dense/FFT':>16} {'wall s':>7}")
for r in rows:
    if r.get("failed"):
        print(f"{r['id']:<24} FAILED ({r['wall_s']} s)")
        continue
    dn = dense.get((r["model"], r["epochs"]))
    dt = 100 * dn["test"] if dn else float("nan")
    if r["kind"] == "circ":
        fl = (f"{r['flops_dense'] / max(r['flops_fft'], 1):6.2f}x"
              if r.get("flops_dense") and r.get("flops_fft") else "-")
        print(f"{r['id']:<24} {r['block']:>5} {r['from']:>7} {r['epochs']:>3} {100 * r['test']:7.2f} "
              f"{dt:7.2f} {100 * r['test'] - dt:+6.2f} {r['dense_values']:9.0f} "
              f"{r['stored_values']:8.0f} {r['param_reduction']:6.1f}x {fl:>16} {r['wall_s']:7d}")
    else:
        print(f"{r['id']:<24} {'-':>5} {r['kind']:>7} {r['epochs']:>3} {100 * r['test']:7.2f} "
              f"{dt:7.2f} {100 * r['test'] - dt:+6.2f} {'':>9} {'':>8} {'':>7} {'':>16} "
              f"{r['wall_s']:7d}")
PY
echo "(params: dense values of the circulant layers' matrices (FC layers; the LSTM's two"
echo " matrices), stored: values kept (padding included), reduct: params / stored; FLOPs: those"
echo " layers per sample, dense GEMM over the FFT form; d pts: test points against the engine's"
echo " dense model of the same epochs; admm rows start from that dense model and spend the same"
echo " number of epochs again; one thread per row, LANES=$LANES rows side by side)"
