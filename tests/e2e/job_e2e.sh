#!/usr/bin/env bash
# Whole jobs end to end (tests/e2e/job_e2e.py): the real dnnpress-server with
# its local workers, driven by the real dnnpress CLI, on loopback.
set -euo pipefail
BUILD=${1:?usage: job_e2e.sh BUILD_DIR}
exec /usr/bin/python3 "$(dirname "$0")/job_e2e.py" "$BUILD"
