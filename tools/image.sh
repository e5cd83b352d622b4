#!/usr/bin/env bash
# Builds the dnnpress container image from Debian's packages only, then runs
# the server in it and submits a short job (make image / make test-image).
#
#   tools/image.sh build BUILD_DIR     base (mmdebstrap, once) + image (podman)
#   tools/image.sh test BUILD_DIR      build, then run it and submit a job
#
# The base, localhost/dnnpress-base:bookworm, is made once by mmdebstrap
# from deb.debian.org and reused; delete it (podman rmi) to rebuild it.
set -euo pipefail
cmd=${1:?usage: image.sh build|test BUILD_DIR}
BUILD=$(cd "${2:?usage: image.sh build|test BUILD_DIR}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
BASE=localhost/dnnpress-base:bookworm
IMAGE=localhost/dnnpress:latest
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

need=()
command -v podman > /dev/null || need+=(podman)
command -v runc > /dev/null || need+=(runc)
command -v mmdebstrap > /dev/null || need+=(mmdebstrap)
if [ ${#need[@]} -gt 0 ]; then
  echo "image: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" uidmap
fi

# What the binaries link (ldd of build/release, by package) and what the
# worker runs: cc and make for compile tasks, the built-in datasets.
RUNTIME=libarchive13,libcurl4,libdnnl2,libjansson4,libmicrohttpd12,libopenblas0-openmp
RUNTIME=$RUNTIME,libprotobuf-c1,libsqlite3-0,libssl3,libuv1,zlib1g,libgomp1
RUNTIME=$RUNTIME,gcc,make,libc6-dev,ca-certificates,dataset-fashion-mnist

if ! podman image exists "$BASE"; then
  echo "image: making the Debian 12 base with mmdebstrap (once; a few minutes)"
  mmdebstrap --variant=apt --include="$RUNTIME" \
    --customize-hook='chroot "$1" groupadd --system --gid 10001 dnnpress' \
    --customize-hook='chroot "$1" useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/dnnpress --no-create-home dnnpress' \
    --customize-hook='mkdir -p "$1/var/lib/dnnpress" "$1/var/cache/dnnpress" && chown 10001:10001 "$1/var/lib/dnnpress" "$1/var/cache/dnnpress"' \
    --customize-hook='rm -rf "$1/var/lib/apt/lists"/* "$1/var/cache/apt"/*.bin' \
    bookworm - "$MIRROR" | podman import --change 'CMD ["/bin/bash"]' - "$BASE"
fi

for b in dnnpress-server dnnpress-worker dnnpress; do
  [ -x "$BUILD/$b" ] || { echo "image: $BUILD/$b is missing: make MODE=release all" >&2; exit 1; }
done
# The context is the repository root; .containerignore lets only the three
# binaries in. Copy them under build/release when BUILD is elsewhere.
if [ "$BUILD" != "$root/build/release" ]; then
  mkdir -p "$root/build/release"
  cp "$BUILD"/dnnpress-server "$BUILD"/dnnpress-worker "$BUILD"/dnnpress "$root/build/release/"
fi
podman build --quiet --build-arg BASE="$BASE" -f "$root/deploy/container/Containerfile" \
  --ignorefile "$root/deploy/container/.containerignore" -t "$IMAGE" "$root" > /dev/null
echo "image: built $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"
[ "$cmd" = test ] || exit 0

# ---- test: the server in the image, a local worker, one short job ----------
PORT=${IMAGE_PORT:-18480}
URL=http://127.0.0.1:$PORT
ADMIN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
NAME=dnnpress-image-test-$$
tmp=$(mktemp -d)
cleanup() { podman rm -f "$NAME" > /dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT
# runc rather than crun (crun refuses hosts with hybrid cgroups, as some CI
# VMs have), and limits within this shell's hard limits: podman's defaults
# raise nofile to 2^20, which a root without CAP_SYS_RESOURCE may not.
RUNTIME_FLAGS=()
command -v runc > /dev/null && RUNTIME_FLAGS=(--runtime runc)
podman "${RUNTIME_FLAGS[@]}" run -d --name "$NAME" --network host \
  --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096 -e DNNPRESS_ADMIN_TOKEN="$ADMIN" \
  -e DNNPRESS_LIMIT_TRAIN=2000 -e DNNPRESS_LIMIT_TEST=500 "$IMAGE" \
  dnnpress-server --listen "127.0.0.1:$PORT" --data-dir /var/lib/dnnpress --local-workers 1 \
  > /dev/null
CLI="$BUILD/dnnpress"
export DNNPRESS_CONFIG=$tmp/cli.json
"$CLI" --server "$URL" health --wait 30 > /dev/null || { podman logs "$NAME" >&2; exit 1; }
TEAM=$("$CLI" --server "$URL" --token "$ADMIN" team create image-test)
TOKEN=$("$CLI" --server "$URL" --token "$ADMIN" token create --team "$TEAM" --name image-test)
"$CLI" login --server "$URL" --token "$TOKEN" > /dev/null
MODEL=$("$CLI" upload model --arch lenet5 --name lenet5)
DATASET=$("$CLI" upload dataset --builtin fashion-mnist --name fashion-mnist)
cat > "$tmp/job.json" <<JSON
{"name": "image-test", "model_id": "$MODEL", "dataset_id": "$DATASET",
 "pretrain": {"epochs": 1, "seed": 1},
 "spec": {"admm": {"iters": 1, "epochs_per_iter": 1}, "retrain": {"epochs": 1},
          "layers": [{"match": "*", "prune": {"scheme": "irregular", "rate": 4}}]},
 "export": {"format": "onnx"}}
JSON
JOB=$("$CLI" submit "$tmp/job.json")
if ! timeout 600 "$CLI" watch "$JOB" > "$tmp/watch.log" 2>&1; then
  tail -20 "$tmp/watch.log" >&2; podman logs "$NAME" 2>&1 | tail -30 >&2
  echo "image: the job in the container failed" >&2; exit 1
fi
"$CLI" download "$JOB" --dir "$tmp/out" > /dev/null
ls "$tmp/out" | grep -q onnx || { echo "image: no ONNX artifact" >&2; exit 1; }
echo "image: the server in $IMAGE ran job $JOB to the end ($(ls "$tmp/out" | tr '\n' ' '))"
