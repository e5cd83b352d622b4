#!/usr/bin/env bash
# The upload path end to end: a dataset tar POSTed with curl to a real
# dnnpress-server on loopback (streamed to a temp file while hashed,
# validated member by member, published content-addressed), this build's
# server against a peer server binary, one after the other in one run.
#
#   tests/bench/upload.sh BUILD_DIR PEER_SERVER [MIB]
#
# PEER_SERVER is another build's dnnpress-server (for the SHA-256 change:
# one built from 4198d3f, the last commit with the hand-written SHA-256:
#   git worktree add /tmp/old 4198d3f && make -C /tmp/old MODE=release \
#       build/release/dnnpress-server).
# Each server gets a fresh data directory on the same disk; the same file
# is uploaded 3 times under new names (a new name is a new asset, the blob
# is the same) and the best MB/s is printed.
set -euo pipefail
build=${1:?usage: upload.sh BUILD_DIR PEER_SERVER [MIB]}
peer=${2:?usage: upload.sh BUILD_DIR PEER_SERVER [MIB]}
mib=${3:-256}
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

# An IDX dataset of about MIB MiB: N 28x28 training images and labels,
# 16 test images (validation reads every byte; the images are random).
/usr/bin/python3 - "$tmp" "$mib" <<'EOF'
import os, struct, sys, tarfile
d, mib = sys.argv[1], int(sys.argv[2])
n = (mib << 20) // 784
def images(k):
    return struct.pack(">IIII", 0x803, k, 28, 28) + os.urandom(k * 784)
def labels(k):
    return struct.pack(">II", 0x801, k) + bytes(i % 10 for i in range(k))
with tarfile.open(os.path.join(d, "data.tar"), "w", format=tarfile.USTAR_FORMAT) as t:
    for name, data in (("train-images-idx3-ubyte", images(n)), ("train-labels-idx1-ubyte", labels(n)),
                       ("t10k-images-idx3-ubyte", images(16)), ("t10k-labels-idx1-ubyte", labels(16))):
        p = os.path.join(d, name)
        with open(p, "wb") as f:
            f.write(data)
        t.add(p, arcname=name)
        os.unlink(p)
EOF
size=$(stat -c %s "$tmp/data.tar")
admin=dpt_bench_admin_0123456789abcdef0123456789abcdef0123456789abcdef01
port=$((20000 + RANDOM % 20000))

run_one() { # label server
    local label=$1 server=$2 data="$tmp/data-$1"
    mkdir -p "$data"
    DNNPRESS_ADMIN_TOKEN=$admin "$server" --listen "127.0.0.1:$port" --data-dir "$data" \
        --max-upload-mb $((mib * 2)) > "$tmp/$label.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" > /dev/null && break; sleep 0.1; done
    local team tok best=0
    team=$(curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
        -d '{"name":"bench"}' "http://127.0.0.1:$port/api/v1/teams" | sed 's/.*"id": *"\([^"]*\)".*/\1/')
    tok=$(curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
        -d "{\"team_id\":\"$team\",\"scope\":\"team\",\"name\":\"b\"}" \
        "http://127.0.0.1:$port/api/v1/tokens" | sed 's/.*"token": *"\([^"]*\)".*/\1/')
    for i in 1 2 3; do
        local t
        t=$(curl -s -o "$tmp/answer" -w '%{time_total}' -H "Authorization: Bearer $tok" \
            -H 'Content-Type: application/octet-stream' --data-binary "@$tmp/data.tar" \
            "http://127.0.0.1:$port/api/v1/datasets?name=u$i&format=idx")
        grep -q '"sha256"' "$tmp/answer" || { echo "upload failed: $(cat "$tmp/answer")"; exit 1; }
        best=$(awk -v s="$size" -v t="$t" -v b="$best" 'BEGIN { r = s / t / 1e6; print (r > b ? r : b) }')
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    printf '%-6s %-60s %8.0f MB/s\n' "$label" "$server" "$best"
}

echo "upload of a $((size >> 20)) MiB IDX dataset tar through dnnpress-server on loopback, best of 3"
run_one peer "$peer"
run_one ours "$build/dnnpress-server"
