#!/usr/bin/env bash
# Compress jobs on torchvision's MobileNetV3-Small, EfficientNet-B0 and
# ShuffleNetV2-x0.5 through the real server (issue 17): tests/e2e/mobile_job.py.
set -euo pipefail
BUILD=${1:?usage: mobile_job.sh BUILD_DIR}
exec /usr/bin/python3 "$(dirname "$0")/mobile_job.py" "$BUILD" "${@:2}"
