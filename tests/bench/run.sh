#!/usr/bin/env bash
# make bench: dnnpress against PyTorch, side by side, one after the other on
# the same machine with the same thread count (docs/benchmarks.md).
#
#   tests/bench/run.sh [WORKER_BINARY]      default build/release/dnnpress-worker
#
#   (a) LeNet-5 (Caffe) on Fashion-MNIST: accuracy, images/s, peak RSS
#   (b) ResNet-20 (CIFAR) on synthetic 3x32x32 data: images/s, peak RSS
#   (c) with BENCH_GEMM=1: OpenBLAS against oneDNN on the GEMM shapes
#
# Environment:
#   THREADS=2             threads for both engines (OMP_NUM_THREADS too)
#   BENCH_EPOCHS=2        LeNet-5 epochs (20 for the accuracy figure)
#   BENCH_SYNTHETIC=2048  synthetic training images for ResNet-20
#   BENCH_MODELS="lenet5 resnet20-cifar"
#   BENCH_DATA=/usr/share/datasets/fashion-mnist
#   BENCH_OUT=build/bench where each run's JSON line and stderr are kept
#   BENCH_GEMM=1          also run tests/bench/gemm_compare.sh $THREADS
#   PYTHON                interpreter with torch (default: /usr/bin/python3
#                         if it has torch, else python3)
#
# Each command prints progress on stderr and one JSON line last on stdout
# with at least test_accuracy, train_images_per_second, peak_rss_bytes.
set -uo pipefail
cd "$(dirname "$0")/../.."

WORKER=${1:-build/release/dnnpress-worker}
THREADS=${THREADS:-2}
EPOCHS=${BENCH_EPOCHS:-2}
SYNTH=${BENCH_SYNTHETIC:-2048}
MODELS=${BENCH_MODELS:-lenet5 resnet20-cifar}
DATA=${BENCH_DATA:-/usr/share/datasets/fashion-mnist}
OUT=${BENCH_OUT:-build/bench}
BATCH=64

if [ -z "${PYTHON:-}" ]; then
  if /usr/bin/python3 -c 'import torch' 2>/dev/null; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c 'import torch, numpy' 2>/dev/null; then
  echo "bench: $PYTHON cannot import torch and numpy (python3-torch, python3-numpy)" >&2
  exit 1
fi

mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
failed=0

have_worker=1
if [ ! -x "$WORKER" ]; then
  have_worker=0
  echo "bench: NOTE: worker binary '$WORKER' not found: running the PyTorch side only" >&2
fi

export OMP_NUM_THREADS="$THREADS"
# Timings are only worth something on a quiet machine: with OpenMP threads
# competing for cores, both engines slow down by integer factors.
read -r load1 _ </proc/loadavg
if awk -v l="$load1" 'BEGIN { exit !(l > 0.5) }'; then
  echo "bench: WARNING: 1-minute load average $load1: if other jobs are running, the timings will be disturbed" >&2
fi
echo "bench: $(nproc) cores, THREADS=$THREADS, LeNet-5 epochs=$EPOCHS, ResNet-20 synthetic=$SYNTH," \
  "batch $BATCH, $(date -u '+%Y-%m-%d %H:%M UTC')" >&2

# run_one LABEL ENGINE MODEL CMD...: runs CMD, keeps its last JSON line.
run_one() {
  local label=$1 engine=$2 model=$3
  shift 3
  local log="$OUT/$label.stderr" so="$OUT/$label.stdout" rss="$OUT/$label.rss"
  echo "bench: [$label] $*" >&2
  rm -f "$rss"
  # stdout kept for the JSON line; stderr to the terminal and the log; the
  # peak RSS also measured from outside (peak_rss.py) as a cross-check.
  { "$PYTHON" tests/bench/peak_rss.py "$rss" "$@" 2>&1 >"$so" | tee "$log" >&2; }
  local rc=${PIPESTATUS[0]}
  "$PYTHON" - "$so" "$engine" "$model" "$rc" "$THREADS" "$rss" >>"$RESULTS" <<'EOF'
import json, os, sys
path, engine, model, rc, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rss_path = sys.argv[6]
res = None
for line in reversed(open(path, errors="replace").read().splitlines()):
    line = line.strip()
    if line.startswith("{"):
        try:
            res = json.loads(line)
            break
        except ValueError:
            pass
if res is None or rc != 0:
    res = dict(res or {}, error=f"exit status {rc}" if rc != 0 else "no JSON line on stdout")
res["engine"] = engine
res["model"] = model
res.setdefault("threads", threads)
if os.path.exists(rss_path):
    res["peak_rss_bytes_external"] = int(open(rss_path).read())
print(json.dumps(res))
EOF
  if [ "$rc" -ne 0 ]; then
    echo "bench: [$label] FAILED (exit status $rc), see $log" >&2
    failed=1
  fi
}

for model in $MODELS; do
  case $model in
  lenet5)
    common=(--model lenet5 --data "idx:$DATA" --epochs "$EPOCHS" --batch "$BATCH" --threads "$THREADS")
    if [ $have_worker -eq 1 ]; then
      run_one lenet5-dnnpress dnnpress lenet5 "$WORKER" train "${common[@]}" \
        --lr 0.01 --momentum 0.9 --wd 5e-4 --sched cosine --seed 1
    fi
    run_one lenet5-pytorch pytorch lenet5 "$PYTHON" tests/bench/torch_train.py "${common[@]}" \
      --lr 0.01 --momentum 0.9 --wd 5e-4 --seed 1
    ;;
  resnet20-cifar)
    common=(--model resnet20-cifar --synthetic "$SYNTH" --epochs 1 --batch "$BATCH" --threads "$THREADS")
    if [ $have_worker -eq 1 ]; then
      run_one resnet20-dnnpress dnnpress resnet20-cifar "$WORKER" train "${common[@]}"
    fi
    run_one resnet20-pytorch pytorch resnet20-cifar "$PYTHON" tests/bench/torch_train.py "${common[@]}"
    ;;
  *)
    echo "bench: unknown model '$model' in BENCH_MODELS" >&2
    failed=1
    ;;
  esac
done

echo
"$PYTHON" - "$RESULTS" "$have_worker" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
have_worker = sys.argv[2] == "1"

def num(v, fmt):
    return format(v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"

hdr = ("model", "engine", "threads", "epochs", "images/s", "peak RSS MiB", "(outside)", "test acc %")
table = [hdr]
for r in rows:
    rss = r.get("peak_rss_bytes")
    acc = r.get("test_accuracy")
    table.append((
        r["model"], r["engine"] + (" (FAILED: %s)" % r["error"] if "error" in r else ""),
        str(r.get("threads", "-")), str(r.get("epochs", "-")),
        num(r.get("train_images_per_second"), ".1f"),
        num(rss / 2**20 if isinstance(rss, (int, float)) else None, ".1f"),
        num(r["peak_rss_bytes_external"] / 2**20 if "peak_rss_bytes_external" in r else None, ".1f"),
        num(acc * 100 if isinstance(acc, (int, float)) else None, ".2f"),
    ))
w = [max(len(row[i]) for row in table) for i in range(len(hdr))]
for k, row in enumerate(table):
    print(" | ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(row)))
    if k == 0:
        print("-+-".join("-" * x for x in w))
print()
print("images/s: training loop only (data preloaded, evaluation excluded); peak RSS: as the")
print("process reports it, and (outside) as measured by peak_rss.py around it. Test accuracy")
print("on synthetic data means nothing (the engines' synthetic sets differ).")
if not have_worker:
    print("dnnpress worker binary missing: PyTorch side only.")
for model in dict.fromkeys(r["model"] for r in rows):
    by = {r["engine"]: r for r in rows if r["model"] == model and "error" not in r}
    ours, theirs = by.get("dnnpress"), by.get("pytorch")
    if ours and theirs:
        a, b = ours.get("train_images_per_second"), theirs.get("train_images_per_second")
        ra, rb = ours.get("peak_rss_bytes"), theirs.get("peak_rss_bytes")
        line = f"{model}: speed ours/pytorch = {a / b:.2f}x" if a and b else f"{model}: speed ratio n/a"
        if ra and rb:
            line += f", peak RSS ours/pytorch = {ra / rb:.2f}x"
        print(line)
EOF
echo "bench: JSON lines in $RESULTS"

if [ "${BENCH_GEMM:-0}" = "1" ]; then
  echo
  tests/bench/gemm_compare.sh "$THREADS" || failed=1
fi

exit $failed
