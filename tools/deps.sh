#!/usr/bin/env bash
# Installs every Debian package dnnpress needs, and only what is missing.
# Idempotent: a second run installs nothing and says so.
set -euo pipefail

PKGS=(
  build-essential pkg-config clang-format
  libopenblas-openmp-dev      # GEMM for linear layers and im2col convolutions
  libdnnl-dev                 # oneDNN convolution primitives (docs/benchmarks.md says when)
  libjansson-dev zlib1g-dev   # JSON (safetensors headers, specs), gzipped IDX files
  libcriterion-dev            # unit tests
  libmicrohttpd-dev libsqlite3-dev libuv1-dev   # dnnpress-server: HTTP, the store, local workers
  curl wrk                    # server e2e checks and the API load benchmark
  dataset-fashion-mnist       # the real data of the demo, the tests and the benches
  python3 python3-numpy python3-torch   # test fixtures and benchmark peers only, never run time
  libcurl4-openssl-dev        # worker task loop (serve) and the dnnpress CLI (libuv: above)
  libssl-dev                  # libcrypto: SHA-256 of every upload, blob and download (EVP)
  openssl                     # tests/e2e/tls.sh makes a throwaway CA
  libarchive-dev              # the one dataset tar reader (tar, pax, gzip), server and worker
  # ---- ONNX (issue 4) ----
  libonnx-dev                 # onnx.proto, compiled by protoc-c at build time
  protobuf-c-compiler libprotobuf-c-dev  # the ONNX reader/writer's protobuf code
  clang                       # the libFuzzer target (make fuzz)
  python3-onnx python3-opencv # test peers only: node-test generator, onnx.checker, OpenCV dnn
  systemd                     # systemd-analyze: make test verifies deploy/systemd's units
  # ---- compile --target opencl (issue 12) ----
  ocl-icd-opencl-dev opencl-headers  # the bundle's host runner: CL/cl.h and -lOpenCL (ICD loader)
  pocl-opencl-icd clinfo             # an OpenCL device on the CPU for the tests; clinfo -l lists devices
  # ---- the dashboard (issue 14) ----
  nodejs                      # builds web/ (npm ci + esbuild); never needed to run the server
  chromium                    # tests/web: the dashboard in headless Chromium (playwright-core)
  python3-torchvision         # test peers only: the torchvision architectures of tests/onnx (issue 17)
  # ---- block-circulant layers (issue 15) ----
  libfftw3-dev                # real FFTs of the circulant layers (single precision: -lfftw3f)
)
# npm: the dashboard build and the deploy manifests' schema check; Debian's
# nodejs comes without npm (NodeSource's includes it, and the two conflict).
command -v npm > /dev/null 2>&1 || PKGS+=(npm)

# ONNX Runtime for the tests (a peer, never run time): npm's onnxruntime-node
# pinned by tests/ort/package-lock.json, installed with `npm ci` into
# tests/ort/node_modules when missing or older than the lockfile. Node.js
# itself comes with the machine (nodesource's nodejs bundles npm).
ort_deps() {
  local d
  d="$(dirname "$0")/../tests/ort"
  if [ -d "$d/node_modules/onnxruntime-node" ] && [ "$d/node_modules/.package-lock.json" -nt "$d/package-lock.json" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null; then
    echo "deps: WARNING: no npm: tests/ort (ONNX Runtime for the tests) not installed" >&2
    return 0
  fi
  echo "deps: npm ci in tests/ort (onnxruntime-node)"
  (cd "$d" && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error)
}

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages already installed"
  ort_deps
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "deps: done"
ort_deps
