#!/usr/bin/env bash
# The device farm end to end (tests/e2e/farm_e2e.py): the real dnnpress-server,
# its local worker and profiling devices (serve --profile), one of them in its
# own network namespace when this machine allows one.
set -euo pipefail
BUILD=${1:?usage: farm_e2e.sh BUILD_DIR}
exec /usr/bin/python3 "$(dirname "$0")/farm_e2e.py" "$BUILD"
