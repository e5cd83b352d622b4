#!/usr/bin/env bash
# SHA-256 throughput of dp_sha256_file on a 512 MiB file: this tree's
# implementation against a peer built from git (default: the hand-written
# common/sha256.c, renamed to peer_* in a temporary directory; nothing is
# committed). Usage: tests/bench/sha256.sh BUILD_DIR [PEER_REV] [MIB]
set -euo pipefail
build=${1:?usage: $0 build/release [rev] [MiB]}
rev=${2:-4198d3f}  # the last commit with the hand-written SHA-256
mib=${3:-512}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/common"
git show "$rev:common/sha256.c" | sed 's/dp_sha256/peer_sha256/g; s#"common/sha256.h"#"peer_sha256.h"#' \
    > "$tmp/peer_sha256.c"
git show "$rev:common/sha256.h" | sed 's/dp_sha256/peer_sha256/g; s/DP_COMMON_SHA256_H/PEER_SHA256_H/' \
    > "$tmp/peer_sha256.h"
cflags="-std=c11 -D_POSIX_C_SOURCE=200809L -O2 -DNDEBUG -I. -I$tmp"
cc $cflags -c "$tmp/peer_sha256.c" -o "$tmp/peer.o"
cc $cflags tests/bench/sha256_bench.c "$tmp/peer.o" "$build/libcommon.a" -lcrypto -o "$tmp/bench"
head -c $((mib << 20)) /dev/urandom > "$tmp/data"
echo "dp_sha256_file on $mib MiB (page cache warm), best of 3; peer: $rev:common/sha256.c"
grep -m1 'model name' /proc/cpuinfo | sed 's/.*: /cpu: /'
grep -q -w sha_ni /proc/cpuinfo && echo "cpu has the SHA extensions (sha_ni)" || echo "cpu lacks sha_ni"
"$tmp/bench" "$tmp/data" 3
