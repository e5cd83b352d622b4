#!/usr/bin/env bash
# The dashboard in a real browser (tests/web/dashboard.test.mjs): Debian's
# chromium, headless, driven by playwright-core (web/node_modules, installed
# by make's npm ci), against the real dnnpress-server of BUILD_DIR with a
# real local worker and real short jobs. Screenshots go to build/web-test/.
set -euo pipefail
BUILD=${1:?usage: run.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
for need in /usr/bin/chromium "$ROOT/web/node_modules/playwright-core" "$BUILD/web/index.html"; do
  [ -e "$need" ] || { echo "web: $need is missing (make deps; make MODE=release all)" >&2; exit 1; }
done
exec node "$ROOT/tests/web/dashboard.test.mjs" "$BUILD" "${WEB_TEST_OUT:-$ROOT/build/web-test}"
