#!/usr/bin/env bash
# auto.objective "latency" through the service (tests/e2e/latency_job.py).
set -euo pipefail
BUILD=${1:?usage: latency_job.sh BUILD_DIR}
exec /usr/bin/python3 "$(dirname "$0")/latency_job.py" "$BUILD"
