#!/usr/bin/env bash
# The server's end-to-end checks (tests/e2e/server_api.py) against the real
# dnnpress-server on loopback with a real SQLite file.
set -euo pipefail
BUILD=${1:?usage: server_api.sh BUILD_DIR}
exec /usr/bin/python3 "$(dirname "$0")/server_api.py" "$BUILD"
