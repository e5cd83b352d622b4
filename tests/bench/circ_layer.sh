#!/usr/bin/env bash
# Builds the circulant layer micro-benchmark (tests/bench/circ_layer.c, the
# Makefile's build/release/circ-layer-bench) and runs it: a block-circulant
# n x n layer's forward through the FFT path against OpenBLAS sgemm on the
# expanded matrix, one thread, batch 1 and 64, k in 4..64, with the
# measured and the FLOP-model crossover block sizes.
#
#   tests/bench/circ_layer.sh [N...]      default: 256 512 1024
#
# A quiet machine matters: each row is a median of 7 trials of ~20 ms.
set -euo pipefail
cd "$(dirname "$0")/../.."
nice make --no-print-directory MODE=release build/release/circ-layer-bench >/dev/null
echo "== circ_layer on $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
grep -m1 'model name' /proc/cpuinfo | sed 's/.*: /cpu: /'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 build/release/circ-layer-bench "$@"
