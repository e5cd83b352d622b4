#!/usr/bin/env bash
# The compiler's correctness matrix (make test; docs/compile.md, "Tests"):
# lenet5, resnet20-cifar and vgg16-cifar, each briefly trained on a few
# images and compressed by `dnnpress-worker compress` (magnitude method,
# tiny budgets) four ways:
#   pattern    pattern + connectivity (lenet5's 5x5 convs: connectivity only)
#   filter     filter pruning with purification (shrunk shapes)
#   irregular  single weights (CSR / bitmask / dense by the break-even)
#   quant      a quantized scheme (lenet5 binary, resnet20 4-bit + irregular,
#              vgg16 pattern + 4-bit: FKW with quantized values)
# compiled for every target of TARGETS, each bundle copied into a clean
# directory, built there with its own Makefile and run: bench exits 1 unless
# its outputs equal the engine's forward (reference.bin) within 1e-4
# relative. Then a model with a layer the compiler cannot handle (a grouped
# convolution of mobilenetv2-cifar) must fail with an error naming the layer.
# lstm-fmnist and gru-fmnist (RNN_MODELS) compile and pass on the C targets;
# opencl refuses them naming the layer.
#
#   tests/e2e/compile_matrix.sh WORKER_BINARY
# Environment: TARGETS="native portable opencl" (a target added to the
# compiler is one more word here; opencl runs on PoCL's CPU device, which
# tools/deps.sh installs: the OpenCL emitter has no CSR or bitmask kernel,
# so its irregular layers are "irregular: dense fallback", and it stores
# quantized weights as floats), MODELS="lenet5 resnet20-cifar vgg16-cifar"
# (set but empty: none), RNN_MODELS="lstm-fmnist gru-fmnist" likewise,
# KEEP=1 keeps the work directory.
set -euo pipefail
WORKER=${1:?usage: compile_matrix.sh WORKER_BINARY}
TARGETS=${TARGETS:-native portable opencl}
MODELS=${MODELS-lenet5 resnet20-cifar vgg16-cifar}
PY=/usr/bin/python3
tmp=$(mktemp -d)
[ "${KEEP:-0}" = 1 ] && echo "compile_matrix: work directory $tmp" || trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
t0=$(date +%s)

# CIFAR-shaped synthetic data (npy): 32 training and 16 test images (16 used).
$PY - "$tmp/cifar" <<'EOF'
import os, sys
import numpy as np
d = sys.argv[1]; os.makedirs(d)
r = np.random.RandomState(7)
for split, n in (("train", 32), ("test", 16)):
    np.save(os.path.join(d, "%s_images.npy" % split), r.rand(n, 3, 32, 32).astype(np.float32))
    np.save(os.path.join(d, "%s_labels.npy" % split), r.randint(0, 10, n).astype(np.int64))
EOF
declare -A DATA=([lenet5]=idx:/usr/share/datasets/fashion-mnist [resnet20-cifar]=npy:$tmp/cifar
                 [vgg16-cifar]=npy:$tmp/cifar)
LIM=(--limit-train 16 --limit-test 16 --threads 2)
# One epoch in all: the magnitude baseline's budget is iters x epochs_per_iter + retrain.
BUDGET='"seed": 1, "method": "magnitude", "magnitude": {"steps": 1}, "retrain": {"epochs": 0},
        "admm": {"iters": 1, "epochs_per_iter": 1}'

# spec MODEL SCHEME: the layers rule of the job spec.
spec() {
  case "$1:$2" in
    lenet5:pattern) echo '"layers": [{"match": "conv2", "prune": {"scheme": "connectivity", "rate": 3}}]' ;;
    resnet20-cifar:pattern) echo '"layers": [{"match": "layer*.conv[12]", "prune": {"scheme": "pattern", "library_size": 8, "connectivity": 3}}]' ;;
    vgg16-cifar:pattern) echo '"layers": [{"match": "features*", "prune": {"scheme": "pattern", "library_size": 8, "connectivity": 3.6}}]' ;;
    lenet5:filter) echo '"purify": true, "layers": [{"match": "conv*", "prune": {"scheme": "filter", "rate": 2}}]' ;;
    resnet20-cifar:filter) echo '"purify": true, "layers": [{"match": "layer*.conv1", "prune": {"scheme": "filter", "rate": 2}}]' ;;
    vgg16-cifar:filter) echo '"purify": true, "layers": [{"match": "features*", "prune": {"scheme": "filter", "rate": 2}}]' ;;
    *:irregular) echo '"layers": [{"match": "*", "prune": {"scheme": "irregular", "rate": 12}}]' ;;
    lenet5:quant) echo '"layers": [{"match": "*", "quant": {"scheme": "binary"}}]' ;;
    resnet20-cifar:quant) echo '"layers": [{"match": "*", "prune": {"scheme": "irregular", "rate": 4}, "quant": {"scheme": "kbit", "bits": 4}}]' ;;
    vgg16-cifar:quant) echo '"layers": [{"match": "features*", "prune": {"scheme": "pattern", "library_size": 8, "connectivity": 3.6}, "quant": {"scheme": "kbit", "bits": 4}}]' ;;
  esac
}

# check_bundle DIR LABEL: builds a copy of the bundle in a clean directory
# and runs its reference check; prints one line, status 0 when it passed.
check_bundle() {
  local src=$1 label=$2 clean="$1.clean"
  rm -rf "$clean" && mkdir -p "$clean"
  cp "$src"/{model.h,model.c,bench.c,Makefile,weights.bin,reference.bin} "$clean/"
  if make -s -C "$clean" >"$clean/make.log" 2>&1 && [ ! -s "$clean/make.log" ] &&
    "$clean/bench" --runs 1 --warmup 0 --threads 2 --batch 2 >"$clean/bench.json" 2>"$clean/bench.err"; then
    $PY -c "
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
f = json.load(open(sys.argv[2]))
fm = {}
for l in f['layers']: fm[l['format']] = fm.get(l['format'], 0) + 1
print('compile_matrix: %-34s ok  max rel err %.2g, weights.bin %d bytes, %s' % (sys.argv[3],
      r['max_rel_err'], f['weights_bin_bytes'], ', '.join('%d %s' % (n, k) for k, n in sorted(fm.items()))))" \
      "$clean/bench.json" "$src/formats.json" "$label"
  else
    printf 'compile_matrix: %-34s FAIL\n' "$label"
    tail -3 "$clean/make.log" "$clean/bench.err" 2>/dev/null || true
    return 1
  fi
}

for model in $MODELS; do
  "$WORKER" train --model "$model" --data "${DATA[$model]}" "${LIM[@]}" --epochs 1 --batch 16 \
    --seed 1 --quiet --out "$tmp/$model.safetensors" >/dev/null
  for scheme in pattern filter irregular quant; do
    echo "{$BUDGET, $(spec "$model" "$scheme")}" >"$tmp/$model-$scheme.json"
    "$WORKER" compress --spec "$tmp/$model-$scheme.json" --model "$tmp/$model.safetensors" \
      --data "${DATA[$model]}" "${LIM[@]}" --quiet --out "$tmp/$model-$scheme.safetensors" \
      >/dev/null
    # Compile for every target, then build and check the bundles two at a time.
    pids=()
    for target in $TARGETS; do
      b="$tmp/b-$model-$scheme-$target"
      if "$WORKER" compile --model "$tmp/$model-$scheme.safetensors" --out "$b" \
        --target "$target" --threads 2 >"$b.compile.log" 2>&1; then
        check_bundle "$b" "$model $scheme $target" >"$b.result" 2>&1 &
        pids+=("$!:$b")
      else
        echo "compile_matrix: $model $scheme $target: compile FAILED"; cat "$b.compile.log"
        fail=$((fail + 1))
      fi
      if [ ${#pids[@]} -ge 2 ] || [ "$target" = "${TARGETS##* }" ]; then
        for pb in "${pids[@]}"; do
          if wait "${pb%%:*}"; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
          cat "${pb#*:}.result"
          rm -rf "${pb#*:}" "${pb#*:}.clean"
        done
        pids=()
      fi
    done
  done
done

# Recurrent models (issue 15): lstm-fmnist and gru-fmnist, trained briefly,
# compiled for every C target and checked like the others (the LSTM/GRU
# steps, the last-step slice); opencl must refuse them naming the layer.
for model in ${RNN_MODELS-lstm-fmnist gru-fmnist}; do
  "$WORKER" train --model "$model" --data idx:/usr/share/datasets/fashion-mnist "${LIM[@]}" \
    --epochs 1 --batch 16 --seed 1 --quiet --out "$tmp/$model.safetensors" >/dev/null
  for target in $TARGETS; do
    b="$tmp/b-$model-$target"
    if [ "$target" = opencl ]; then
      printf 'compile_matrix: %-34s ' "$model opencl is refused"
      if "$WORKER" compile --model "$tmp/$model.safetensors" --out "$b" --target opencl \
        >"$b.log" 2>&1; then
        echo "FAIL: compiled"; fail=$((fail + 1))
      elif grep -qE "layer '[^']+': (lstm|gru) has no OpenCL kernel" "$b.log"; then
        echo "ok  $(cat "$b.log")"; pass=$((pass + 1))
      else
        echo "FAIL: $(cat "$b.log")"; fail=$((fail + 1))
      fi
      continue
    fi
    if "$WORKER" compile --model "$tmp/$model.safetensors" --out "$b" --target "$target" \
      --threads 2 >"$b.compile.log" 2>&1 && check_bundle "$b" "$model $target"; then
      pass=$((pass + 1))
    else
      echo "compile_matrix: $model $target: FAILED"; cat "$b.compile.log"; fail=$((fail + 1))
    fi
    rm -rf "$b" "$b.clean"
  done
done

# A layer the compiler cannot handle: an error naming it, and no bundle.
"$WORKER" train --model mobilenetv2-cifar --data "npy:$tmp/cifar" --limit-train 16 --limit-test 16 \
  --threads 2 --epochs 1 --batch 16 --quiet --out "$tmp/mbv2.safetensors" >/dev/null
printf 'compile_matrix: %-34s ' "unsupported layer is an error"
if "$WORKER" compile --model "$tmp/mbv2.safetensors" --out "$tmp/b-mbv2" >"$tmp/mbv2.log" 2>&1; then
  echo "FAIL: compiled a grouped convolution"; fail=$((fail + 1))
elif grep -qE "layer '[^']+': grouped convolution \(groups=[0-9]+\) is not supported" "$tmp/mbv2.log" &&
  [ ! -e "$tmp/b-mbv2/model.c" ]; then
  echo "ok  $(cat "$tmp/mbv2.log")"; pass=$((pass + 1))
else
  echo "FAIL: $(cat "$tmp/mbv2.log")"; fail=$((fail + 1))
fi

echo "compile_matrix: $pass passed, $fail failed ($(($(date +%s) - t0)) s)"
[ "$fail" -eq 0 ]
