#!/usr/bin/env bash
# Group commit on a slow disk: tests/e2e/durability.py against the real server.
set -euo pipefail
BUILD=${1:?usage: durability.sh BUILD_DIR}
exec /usr/bin/python3 "$(dirname "$0")/durability.py" "$BUILD"
