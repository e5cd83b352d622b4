#!/usr/bin/env bash
# Checks deploy/ without a cluster or an init system: systemd-analyze verify
# and an offline security score on the units (pointing them at the binaries
# just built), and the Kubernetes manifests against the API schemas
# (tests/deploy/validate_k8s.mjs, npm's kubernetes-models).
#
# usage: tests/deploy/check.sh BUILD_DIR NODE_MODULES_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
modules=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The units name /usr/local/bin, where docs/operations.md installs; verify
# checks that ExecStart's binary exists, so point it at this build.
for u in "$root"/deploy/systemd/*.service; do
  sed "s|/usr/local/bin/|$build/|g" "$u" > "$tmp/$(basename "$u")"
done
cp "$tmp/dnnpress-worker@.service" "$tmp/dnnpress-worker@1.service"
(cd "$tmp" && systemd-analyze verify ./dnnpress-server.service ./dnnpress-worker@1.service) \
  || { echo "deploy: systemd-analyze verify failed" >&2; exit 1; }
# Exposure 0 (locked down) .. 10 (unprotected); the units score 1.8 today.
# A unit that loses its hardening (ProtectSystem, NoNewPrivileges, ...) fails.
for u in dnnpress-server.service dnnpress-worker@1.service; do
  (cd "$tmp" && systemd-analyze security --offline=yes --threshold=25 "./$u" > "$tmp/sec.txt" 2>&1) \
    || { tail -3 "$tmp/sec.txt" >&2; echo "deploy: $u exposure above 2.5" >&2; exit 1; }
  echo "deploy: $u: $(grep -o 'Overall exposure level.*' "$tmp/sec.txt")"
done

node "$root/tests/deploy/validate_k8s.mjs" "$modules" \
  "$root/deploy/k8s/base" "$root/deploy/k8s/overlays/example"
