#!/usr/bin/env bash
# Backup under load, restore, check: tests/e2e/backup.py against the real server.
set -euo pipefail
BUILD=${1:?usage: backup.sh BUILD_DIR}
exec /usr/bin/python3 "$(dirname "$0")/backup.py" "$BUILD"
