#!/usr/bin/env bash
# make bench-compile: the generated code of `dnnpress-worker compile` against
# the dense runtimes a team would otherwise use, side by side in one run, one
# after the other at batch 1 on the same threads (docs/benchmarks.md,
# "Compiled models").
#
#   tests/bench/compile.sh [WORKER_BINARY]     default build/release/dnnpress-worker
#
# For vgg16-cifar and resnet20-cifar (random weights, tests/bench/compile_models.py),
# dense and pattern-pruned (8 patterns of 4 taps on every 3x3 conv, 1/3.6 of
# the kernels kept: about 8x fewer MACs):
#   ours      dnnpress-worker compile --target native, make -C BUNDLE,
#             BUNDLE/bench (pattern and dense)
#   PyTorch   tests/bench/torch_infer.py: jit.trace + freeze + optimize_for_inference
#   ORT       tests/bench/ort_bench.js: npm's onnxruntime-node, optimisation 'all'
# The peers also run the pattern-pruned model: its zeros do not make them
# faster, which the table shows. Before the rows, the machine's dense peak
# (tests/bench/sgemm_peak.c, OpenBLAS sgemm) is measured in the same run.
# Then the goal checks and the storage table (formats computed from the
# weights by compile_models.py, plus the bundle's weight file).
#
# A worker without the `compile` command gives the peers only, and says so.
#
# Environment:
#   THREADS=2                 threads of every engine (OMP_NUM_THREADS too)
#   RUNS=200 WARMUP=20        timed and untimed runs of each engine
#   TUNE_S=0                  seconds of `compile --tune` per bundle of ours (0: none)
#   BENCH_COMPILE_MODELS="vgg16-cifar resnet20-cifar"
#   BENCH_OUT=build/bench     results under BENCH_OUT/compile
#   ORT_DIR=build/ort         where onnxruntime-node is installed (npm, on
#                             first use; never committed)
#   PYTHON=/usr/bin/python3   interpreter with torch and onnx
#   BENCH_COMPILE_SWEEP=1     0: skip the irregular break-even sweep (compile_sweep.py)
set -uo pipefail
cd "$(dirname "$0")/../.."

WORKER=${1:-build/release/dnnpress-worker}
THREADS=${THREADS:-2}
RUNS=${RUNS:-200}
WARMUP=${WARMUP:-20}
TUNE_S=${TUNE_S:-0}
MODELS=${BENCH_COMPILE_MODELS:-vgg16-cifar resnet20-cifar}
OUT=${BENCH_OUT:-build/bench}/compile
ORT_DIR=${ORT_DIR:-build/ort}
PYTHON=${PYTHON:-/usr/bin/python3}
TOL=1e-4

if ! "$PYTHON" -c 'import torch, onnx, numpy' 2>/dev/null; then
  echo "bench-compile: $PYTHON cannot import torch, onnx and numpy" \
    "(python3-torch, python3-onnx, python3-numpy)" >&2
  exit 1
fi
mkdir -p "$OUT/logs"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
failed=0

export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"

have_worker=0 have_compile=0
if [ -x "$WORKER" ]; then
  have_worker=1
  # The command exists when its --help succeeds or the usage lists it.
  if "$WORKER" compile --help >/dev/null 2>&1 ||
    "$WORKER" 2>&1 | grep -qE '^[[:space:]]+compile[[:space:]]'; then
    have_compile=1
  else
    echo "bench-compile: NOTE: '$WORKER' has no 'compile' command: the 'ours' rows are" \
      "skipped, peers only" >&2
  fi
else
  echo "bench-compile: NOTE: worker binary '$WORKER' not found: peers only, and the" \
    "ONNX files are not checked against our importer" >&2
fi

read -r load1 _ </proc/loadavg
if awk -v l="$load1" 'BEGIN { exit !(l > 0.5) }'; then
  echo "bench-compile: WARNING: 1-minute load average $load1: if other jobs are running," \
    "the timings will be disturbed" >&2
fi
echo "bench-compile: $(nproc) cores, THREADS=$THREADS, batch 1, $RUNS runs after $WARMUP," \
  "$(date -u '+%Y-%m-%d %H:%M UTC')" >&2

# ---- models (regenerated when the generator changes) -------------------------

MD="$OUT/models"
if [ ! -f "$MD/.stamp" ] || [ tests/bench/compile_models.py -nt "$MD/.stamp" ] ||
  [ tests/bench/torch_train.py -nt "$MD/.stamp" ]; then
  rm -rf "$MD" && mkdir -p "$MD"
  echo "bench-compile: building the models (tests/bench/compile_models.py)" >&2
  "$PYTHON" -W ignore tests/bench/compile_models.py "$MD" --models "${MODELS// /,}" ||
    { echo "bench-compile: compile_models.py failed" >&2; exit 1; }
  touch "$MD/.stamp"
fi
for m in $MODELS; do
  [ -f "$MD/$m.json" ] || { echo "bench-compile: no $MD/$m.json: remove $MD and rerun" >&2; exit 1; }
done

# Our importer must read the files and give PyTorch's logits (4 images).
if [ $have_worker -eq 1 ]; then
  for m in $MODELS; do
    for v in dense pattern; do
      printf 'bench-compile: importer check %-26s ' "${m}_$v" >&2
      if "$WORKER" infer --model "$MD/${m}_$v.onnx" --input "$MD/${m}_x4.npy" \
        --output "$OUT/logs/${m}_${v}_infer.npy" --threads "$THREADS" \
        >"$OUT/logs/${m}_${v}_infer.log" 2>&1 &&
        "$PYTHON" tests/onnx/peer_check.py compare "$OUT/logs/${m}_${v}_infer.npy" \
          "$MD/${m}_${v}_y4.npy" "$TOL" >&2; then
        :
      else
        echo "bench-compile: importer check of ${m}_$v FAILED (see $OUT/logs/${m}_${v}_infer.log)" >&2
        failed=1
      fi
    done
  done
fi

# ---- ONNX Runtime (npm, into build/, on first use) ---------------------------

have_ort=0
if [ -d "$ORT_DIR/node_modules/onnxruntime-node" ]; then
  have_ort=1
elif command -v npm >/dev/null && command -v node >/dev/null; then
  echo "bench-compile: installing onnxruntime-node into $ORT_DIR (npm)" >&2
  mkdir -p "$ORT_DIR"
  [ -f "$ORT_DIR/package.json" ] || echo '{"name": "dnnpress-bench-ort", "private": true}' \
    >"$ORT_DIR/package.json"
  if (cd "$ORT_DIR" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund \
    onnxruntime-node >&2); then
    have_ort=1
  fi
fi
if [ $have_ort -eq 0 ]; then
  echo "bench-compile: WARNING: no onnxruntime-node (needs node and npm): ORT rows skipped" >&2
  failed=1
fi

# ---- runs ---------------------------------------------------------------------

# run_one LABEL ENGINE MODEL VARIANT CMD...: runs CMD, keeps its last JSON
# line (labelled) in RESULTS; stderr in logs/LABEL.stderr.
run_one() {
  local label=$1 engine=$2 model=$3 variant=$4
  shift 4
  local log="$OUT/logs/$label.stderr" so="$OUT/logs/$label.stdout"
  echo "bench-compile: [$label] $*" >&2
  "$@" >"$so" 2>"$log"
  local rc=$?
  "$PYTHON" - "$so" "$engine" "$model" "$variant" "$rc" "${FORMATS_JSON:-}" >>"$RESULTS" <<'EOF'
import json, sys
path, engine, model, variant, rc, formats = sys.argv[1:7]
res = None
for line in reversed(open(path, errors="replace").read().splitlines()):
    line = line.strip()
    if line.startswith("{"):
        try:
            res = json.loads(line)
            break
        except ValueError:
            pass
if res is None or rc != "0":
    res = dict(res or {}, error="exit status %s" % rc if rc != "0" else "no JSON line on stdout")
res.update(engine=engine, model=model, variant=variant)
if formats:
    # Our bundles: each layer's format reason and density (formats.json).
    why = {l["name"]: l for l in json.load(open(formats))["layers"]}
    for l in res.get("layers", []):
        if l.get("name") in why:
            l.update(why=why[l["name"]]["why"], density=why[l["name"]]["density"])
print(json.dumps(res))
EOF
  if [ "$rc" -ne 0 ]; then
    echo "bench-compile: [$label] FAILED (exit status $rc), see $log" >&2
    tail -5 "$log" >&2
    failed=1
  fi
}

# ours MODEL VARIANT: compile, build and run the bundle in OUT/bundles.
ours() {
  local m=$1 v=$2 dir="$OUT/bundles/$1_$2"
  rm -rf "$dir"
  mkdir -p "$OUT/bundles"
  echo "bench-compile: [ours-$m-$v] compile + make" >&2
  if ! "$WORKER" compile --model "$MD/${m}_$v.onnx" --out "$dir" --target native \
    --threads "$THREADS" --tune "$TUNE_S" >"$OUT/logs/ours-$m-$v.compile.log" 2>&1; then
    echo "bench-compile: [ours-$m-$v] compile FAILED, see $OUT/logs/ours-$m-$v.compile.log" >&2
    tail -5 "$OUT/logs/ours-$m-$v.compile.log" >&2
    echo "{\"engine\": \"ours\", \"model\": \"$m\", \"variant\": \"$v\", \"error\": \"compile failed\"}" \
      >>"$RESULTS"
    failed=1
    return
  fi
  if ! make -C "$dir" >"$OUT/logs/ours-$m-$v.make.log" 2>&1; then
    echo "bench-compile: [ours-$m-$v] make FAILED, see $OUT/logs/ours-$m-$v.make.log" >&2
    tail -5 "$OUT/logs/ours-$m-$v.make.log" >&2
    echo "{\"engine\": \"ours\", \"model\": \"$m\", \"variant\": \"$v\", \"error\": \"make failed\"}" \
      >>"$RESULTS"
    failed=1
    return
  fi
  FORMATS_JSON="$dir/formats.json" run_one "ours-$m-$v" ours "$m" "$v" "$dir/bench" \
    --runs "$RUNS" --warmup "$WARMUP" --threads "$THREADS" --batch 1
}

gcc -std=c11 -O2 -Wall -Wextra tests/bench/sgemm_peak.c -o "$OUT/sgemm_peak" -lopenblas ||
  { echo "bench-compile: cannot build sgemm_peak (libopenblas-dev)" >&2; exit 1; }
run_one peak openblas sgemm - "$OUT/sgemm_peak" "$THREADS"

for m in $MODELS; do
  if [ $have_compile -eq 1 ]; then
    ours "$m" pattern
    ours "$m" dense
  fi
  for v in dense pattern; do
    run_one "pytorch-$m-$v" pytorch "$m" "$v" "$PYTHON" -W ignore tests/bench/torch_infer.py \
      --model "$m" --weights "$MD/${m}_$v.pt" --input "$MD/${m}_x.npy" \
      --ref "$MD/${m}_${v}_y.npy" --variant "$v" --runs "$RUNS" --warmup "$WARMUP" \
      --threads "$THREADS"
    if [ $have_ort -eq 1 ]; then
      run_one "ort-$m-$v" onnxruntime "$m" "$v" node tests/bench/ort_bench.js \
        --model "$MD/${m}_$v.onnx" --input "$MD/${m}_x.npy" --ref "$MD/${m}_${v}_y.npy" \
        --name "$m" --variant "$v" --runs "$RUNS" --warmup "$WARMUP" --threads "$THREADS" \
        --ort-dir "$ORT_DIR"
    fi
  done
done

echo
"$PYTHON" tests/bench/compile_report.py "$RESULTS" "$MD" "$OUT/bundles" "$have_compile" "$TOL" ||
  failed=1
# ---- the compiler's storage and the irregular break-even ----------------------
# compile_storage.py: pattern, pattern + 4-bit and irregular variants, bytes
# per format from each bundle's formats.json. compile_sweep.py: density x
# format with the generated dense, CSR and bitmask kernels, 1 thread (the
# per-core efficiency the break-even is about, without barrier noise); its
# break-evens are cg_sparse.c's table. BENCH_COMPILE_SWEEP=0 skips the sweep.
if [ $have_compile -eq 1 ]; then
  echo
  "$PYTHON" -W ignore tests/bench/compile_storage.py "$WORKER" "$OUT/storage" || failed=1
  if [ "${BENCH_COMPILE_SWEEP:-1}" = 1 ]; then
    echo
    "$PYTHON" -W ignore tests/bench/compile_sweep.py "$WORKER" "$OUT/sweep" \
      --targets native,portable --threads 1 --runs 20 || failed=1
  fi
fi
read -r load1 load5 _ </proc/loadavg
echo "bench-compile: load average at the end: $load1 (1 min), $load5 (5 min)"
echo "bench-compile: JSON lines in $RESULTS, logs in $OUT/logs"
exit $failed
