#!/usr/bin/env bash
# The API under load from wrk on loopback (docs/benchmarks.md, "Server under
# load"): for each durability mode (--sync group, the default, and full) and
# 32 and 256 connections: job submissions alone (durable: each 201 is on
# disk), GET of one job alone, and GET of one job while 16 other clients
# keep submitting. The server runs with its defaults otherwise (an 8-thread
# epoll pool), without rate limits or quotas (they would answer 429), and
# with no per-address connection cap (every client is 127.0.0.1).
#
#   tests/bench/server_wrk.sh BUILD_DIR [SECONDS]
#
# Prints one row per measurement: requests/s and wrk's latency percentiles,
# then the goals of issue 16 against the group rows. The machine is shared:
# compare rows of one run.
set -euo pipefail
BUILD=${1:?usage: server_wrk.sh BUILD_DIR [SECONDS]}
SECS=${2:-10}
SERVER="$BUILD/dnnpress-server"
HERE=$(cd "$(dirname "$0")" && pwd)
command -v wrk > /dev/null || { echo "server_wrk: wrk is not installed (make deps)"; exit 1; }
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2> /dev/null && wait "$pid" 2> /dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
ADMIN=bench-admin-token-0123456789
PORT=$((20000 + RANDOM % 20000))
URL=http://127.0.0.1:$PORT
json() { /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
post() { curl -sf -H "Authorization: Bearer $1" -H 'Content-Type: application/json' -d "$3" "$URL$2"; }

# wrk --latency output -> "req/s p50 p99" (milliseconds), and the row kept in $tmp/rows
row() { # SYNC CONNS WHAT
  awk -v s="$1" -v c="$2" -v w="$3" '
    function ms(x) { if (x ~ /us$/) return x / 1000; if (x ~ /ms$/) return x + 0;
                     if (x ~ /s$/) return x * 1000; return x }
    /Requests\/sec/ {rps=$2} /^ +50%/ {p50=ms($2)} /^ +99%/ {p99=ms($2)} /Non-2xx/ {bad=$NF}
    END {printf "server_wrk: %-5s %4d  %-28s %10.0f req/s  p50 %7.2f ms  p99 %7.2f ms%s\n",
         s, c, w, rps, p50, p99, (bad ? "  NON-2xx: " bad : "")}' | tee -a "$tmp/rows"
}

echo "server_wrk: sync conns  measurement                       req/s       p50          p99"
for sync in group full; do
  for conns in 32 256; do
    rm -rf "$tmp/data"
    DNNPRESS_ADMIN_TOKEN=$ADMIN "$SERVER" --listen 127.0.0.1:$PORT --data-dir "$tmp/data" \
        --sync $sync --rate-limit-rps 0 --quota-active-jobs 0 --http-per-ip-conns 0 \
        --http-max-conns 4000 > "$tmp/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -sf "$URL/healthz" > /dev/null && break; sleep 0.05; done
    team=$(post $ADMIN /api/v1/teams '{"name":"bench"}' | json id)
    TOKEN=$(post $ADMIN /api/v1/tokens "{\"team_id\":\"$team\",\"scope\":\"team\"}" | json token)
    MODEL=$(post "$TOKEN" /api/v1/models '{"name":"m","arch":"lenet5"}' | json id)
    DATASET=$(post "$TOKEN" /api/v1/datasets '{"name":"d","builtin":"fashion-mnist"}' | json id)
    export TOKEN MODEL DATASET
    wrk -t2 -c$conns -d${SECS}s --latency -s "$HERE/server_submit.lua" "$URL/api/v1/jobs" |
      row $sync $conns "POST /api/v1/jobs (durable)"
    JOB=$(curl -sf -H "Authorization: Bearer $TOKEN" "$URL/api/v1/jobs?limit=1" |
          /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
    wrk -t2 -c$conns -d${SECS}s --latency -H "Authorization: Bearer $TOKEN" "$URL/api/v1/jobs/$JOB" |
      row $sync $conns "GET /api/v1/jobs/{id}"
    # Mixed: the GETs while 16 clients keep submitting.
    wrk -t1 -c16 -d$((SECS + 2))s --latency -s "$HERE/server_submit.lua" "$URL/api/v1/jobs" \
      > "$tmp/mixed-post.txt" &
    wpid=$!
    sleep 1
    wrk -t2 -c$conns -d${SECS}s --latency -H "Authorization: Bearer $TOKEN" "$URL/api/v1/jobs/$JOB" |
      row $sync $conns "GET job, 16 submitting"
    wait $wpid
    row $sync 16 "  (those submissions)" < "$tmp/mixed-post.txt"
    kill "$pid"; wait "$pid" || true; pid=""
  done
done
# The goals of issue 16, against the group rows of this run.
/usr/bin/python3 - "$tmp/rows" << 'PY'
import re, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"server_wrk: (\w+)\s+(\d+)\s+(.+?)\s{2,}(\d+) req/s\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms", line)
    if m:
        rows[(m[1], int(m[2]), m[3].strip())] = (float(m[4]), float(m[5]), float(m[6]))
def show(name, got, goal, ok):
    print(f"server_wrk: goal {name}: {got} (goal {goal}): {'met' if ok else 'NOT met'}")
g = rows.get(("group", 32, "GET job, 16 submitting"))
if g: show("GET p99 at 32 connections with writes running", f"{g[2]:.2f} ms", "< 5 ms", g[2] < 5)
g = max((v[0] for k, v in rows.items() if k[0] == "group" and k[2] == "GET /api/v1/jobs/{id}"), default=0)
show("GET/s", f"{g:.0f}", ">= 20000", g >= 20000)
g = max((v[0] for k, v in rows.items() if k[0] == "group" and k[2].startswith("POST")), default=0)
f = max((v[0] for k, v in rows.items() if k[0] == "full" and k[2].startswith("POST")), default=0)
show("durable submissions/s (group commit)", f"{g:.0f}", ">= 2000", g >= 2000)
print(f"server_wrk: synchronous=FULL per commit: {f:.0f} submissions/s against {g:.0f} with group commit")
PY
exit 0
