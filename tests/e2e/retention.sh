#!/usr/bin/env bash
# Retention (GC racing a job, expiring keys, checkpoints, events) and DELETE:
# tests/e2e/retention.py against the real server.
set -euo pipefail
BUILD=${1:?usage: retention.sh BUILD_DIR}
exec /usr/bin/python3 "$(dirname "$0")/retention.py" "$BUILD"
