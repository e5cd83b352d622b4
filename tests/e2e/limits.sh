#!/usr/bin/env bash
# Rate limits, quotas and fair claims: tests/e2e/limits.py against the real server.
set -euo pipefail
BUILD=${1:?usage: limits.sh BUILD_DIR}
exec /usr/bin/python3 "$(dirname "$0")/limits.py" "$BUILD"
