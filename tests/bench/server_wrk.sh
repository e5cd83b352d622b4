#!/usr/bin/env bash
# The API under load from wrk on loopback (docs/benchmarks.md): GET of one
# job, GET of the job list (limit=50), and job submission, for each
# libmicrohttpd polling mode (epoll and poll, an 8-thread pool by default;
# THREADS=N to change), and GET of a job while 4 clients keep submitting.
#
#   tests/bench/server_wrk.sh BUILD_DIR [SECONDS] [CONNECTIONS]
#
# Prints one line per (mode, endpoint): requests/s and latency percentiles
# as wrk measured them. The machine is shared: numbers are noisy.
set -euo pipefail
BUILD=${1:?usage: server_wrk.sh BUILD_DIR [SECONDS] [CONNECTIONS]}
SECS=${2:-10}
CONNS=${3:-32}
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

# wrk --latency output -> "req/s p50 p99"
summarize() {
  awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
       /Non-2xx/ {bad=$NF} END {printf "%10s req/s  p50 %8s  p99 %8s%s\n", rps, p50, p99,
       (bad ? "  NON-2xx: " bad : "")}'
}

for mode in epoll poll; do
  rm -rf "$tmp/data"
  DNNPRESS_ADMIN_TOKEN=$ADMIN "$SERVER" --listen 127.0.0.1:$PORT --data-dir "$tmp/data" \
      --threads ${THREADS:-8} --http-mode $mode --rate-limit-rps 0 --quota-active-jobs 0 \
      > "$tmp/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "$URL/healthz" > /dev/null && break; sleep 0.05; done
  team=$(post $ADMIN /api/v1/teams '{"name":"bench"}' | json id)
  TOKEN=$(post $ADMIN /api/v1/tokens "{\"team_id\":\"$team\",\"scope\":\"team\"}" | json token)
  MODEL=$(post "$TOKEN" /api/v1/models '{"name":"m","arch":"lenet5"}' | json id)
  DATASET=$(post "$TOKEN" /api/v1/datasets '{"name":"d","builtin":"fashion-mnist"}' | json id)
  export TOKEN MODEL DATASET
  # Submission first (it also fills the list the GETs read).
  printf "server_wrk: %-5s POST /api/v1/jobs          " $mode
  wrk -t2 -c$CONNS -d${SECS}s --latency -s "$HERE/server_submit.lua" "$URL/api/v1/jobs" | summarize
  n=$(sqlite3 "$tmp/data/dnnpress.db" 'SELECT count(*) FROM jobs' 2> /dev/null ||
      /usr/bin/python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from jobs").fetchone()[0])' "$tmp/data/dnnpress.db")
  JOB=$(curl -sf -H "Authorization: Bearer $TOKEN" "$URL/api/v1/jobs?limit=1" |
        /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
  printf "server_wrk: %-5s GET /api/v1/jobs/{id}      " $mode
  wrk -t2 -c$CONNS -d${SECS}s --latency -H "Authorization: Bearer $TOKEN" "$URL/api/v1/jobs/$JOB" | summarize
  printf "server_wrk: %-5s GET /api/v1/jobs?limit=50  " $mode
  wrk -t2 -c$CONNS -d${SECS}s --latency -H "Authorization: Bearer $TOKEN" "$URL/api/v1/jobs?limit=50" | summarize
  # Mixed: GET of one job while 4 clients keep submitting (writes fsync).
  wrk -t1 -c4 -d$((SECS + 2))s --latency -s "$HERE/server_submit.lua" "$URL/api/v1/jobs" > "$tmp/mixed-post.txt" &
  wpid=$!
  sleep 1
  printf "server_wrk: %-5s GET job during submissions " $mode
  wrk -t1 -c$((CONNS / 2)) -d${SECS}s --latency -H "Authorization: Bearer $TOKEN" "$URL/api/v1/jobs/$JOB" | summarize
  wait $wpid
  printf "server_wrk: %-5s   (the submissions meanwhile) " $mode
  summarize < "$tmp/mixed-post.txt"
  echo "server_wrk: $mode: $n jobs in the database after the submission run"
  kill "$pid"; wait "$pid" || true; pid=""
done
