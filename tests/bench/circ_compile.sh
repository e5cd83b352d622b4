#!/usr/bin/env bash
# The compiled block-circulant linear layer (FFT kernel) against the
# compiled dense linear layer, batch 1, one thread (issue 15; docs/compile.md,
# "Block-circulant and recurrent layers"). Builds tests/bench/circ_compile.c
# against build/release's libraries (make MODE=release all first) and runs it:
# per shape one dense bundle and one bundle per block size, each built with
# its own Makefile and timed by its bench (native target, the path the CPU
# runs fastest). Not part of make bench.
#
#   tests/bench/circ_compile.sh [RUNS] [SHAPES] [BLOCKS]
#     defaults: 2000  1024x1024,300x784  4,8,16,32,64
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-2000}
shapes=${2:-1024x1024,300x784}
blocks=${3:-4,8,16,32,64}
b=build/release
out=build/bench
mkdir -p "$out"
cc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -I. -I$b/gen tests/bench/circ_compile.c \
  -o "$out/circ_compile" $b/libnn.a $b/libcommon.a \
  -ldnnl -lopenblas -lfftw3f -fopenmp -ljansson -lprotobuf-c -lcurl -larchive -lcrypto -lz -lm
dir=$(mktemp -d /tmp/dp-circ-bench-XXXXXX)
trap 'rm -rf "$dir"' EXIT
echo "== circ_compile on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "== batch 1, 1 thread, $runs runs; min_ms: the layer's fastest image, p50_ms: the run's median"
"$out/circ_compile" "$dir" "$runs" "$shapes" "$blocks"
