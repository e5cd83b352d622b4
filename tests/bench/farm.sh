#!/usr/bin/env bash
# The device table through the service (tests/bench/farm_bench.py): the
# pattern-pruned and dense vgg16-cifar and resnet20-cifar of bench-compile,
# measured by a profiling device on this machine through dnnpress-server, next
# to the same bundles timed directly (docs/benchmarks.md, "Device farm").
#
#   tests/bench/farm.sh [BUILD_DIR]      default build/release
# Environment: THREADS, RUNS, WARMUP, BENCH_COMPILE_MODELS, BENCH_OUT, PYTHON
# (as tests/bench/compile.sh; the models are compile_models.py's, made when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build/release}
PYTHON=${PYTHON:-/usr/bin/python3}
MODELS=${BENCH_COMPILE_MODELS:-vgg16-cifar resnet20-cifar}
MD=${BENCH_OUT:-build/bench}/compile/models
for m in $MODELS; do
  if [ ! -f "$MD/${m}_pattern.onnx" ] || [ ! -f "$MD/${m}_dense.onnx" ]; then
    mkdir -p "$MD"
    echo "bench-farm: building the models (tests/bench/compile_models.py)" >&2
    "$PYTHON" -W ignore tests/bench/compile_models.py "$MD" --models "${MODELS// /,}"
    break
  fi
done
export OMP_NUM_THREADS=${THREADS:-2}
exec "$PYTHON" tests/bench/farm_bench.py "$BUILD" "$MD"
