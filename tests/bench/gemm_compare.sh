#!/usr/bin/env bash
# Builds tests/bench/gemm_compare.c (gcc -O2) and runs it: OpenBLAS
# cblas_sgemm against oneDNN dnnl_sgemm on the GEMM shapes of one LeNet-5 and
# one ResNet-20 training step at batch 64 (docs/benchmarks.md, "GEMM library").
#
#   tests/bench/gemm_compare.sh [THREADS...]     default: 2 1
#
# Needs libopenblas-openmp-dev and libdnnl-dev.
# If OPENBLAS_* variables are set in the environment, it runs a second pass
# with them unset, so that their effect on OpenBLAS shows. GEMM_CORETYPES
# (e.g. "SKYLAKEX HASWELL ZEN") adds one pass per forced OpenBLAS core type.
set -euo pipefail
cd "$(dirname "$0")/../.."

out=build/bench
mkdir -p "$out"
if [ ! -f /usr/include/dnnl.h ]; then
  echo "gemm_compare: oneDNN headers missing: apt-get install -y libdnnl-dev" >&2
  exit 1
fi
gcc -std=c11 -O2 -Wall -Wextra -fopenmp tests/bench/gemm_compare.c \
  -o "$out/gemm_compare" -lopenblas -ldnnl -lm

echo "== gemm_compare on $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "== env | grep OPENBLAS:"
env | grep OPENBLAS || echo "   (nothing)"

echo
echo "######## pass: environment as is"
"$out/gemm_compare" "$@"

if env | grep -q '^OPENBLAS_'; then
  echo
  echo "######## pass: OPENBLAS_* unset"
  unset_args=()
  for v in $(env | grep -o '^OPENBLAS_[A-Z0-9_]*'); do unset_args+=(-u "$v"); done
  env "${unset_args[@]}" "$out/gemm_compare" "$@"
fi

for ct in ${GEMM_CORETYPES:-}; do
  echo
  echo "######## pass: OPENBLAS_CORETYPE=$ct"
  OPENBLAS_CORETYPE=$ct "$out/gemm_compare" "$@"
done
