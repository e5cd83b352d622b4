#!/usr/bin/env bash
# Writes the HTTP fuzzer's seed corpus into DIR: one raw connection's bytes
# a file, the requests a client sends (every route, tokens, JSON and
# chunked bodies, uploads, keep-alive and pipelining) and the edges that
# once went wrong (a 96+-byte path and a 64-byte unknown JSON field that
# overflowed a stack buffer, a dataset tar whose member name is 64 bytes).
# $ADMIN, $TEAM, $MODEL, $DATASET and $OMODEL are placeholders that
# tests/fuzz/fuzz_http.c replaces with the server's tokens and ids; a
# Content-Length counts the bytes after that substitution (the lengths are
# fixed: the harness checks them at start).
# Generated at build time, never committed.
set -euo pipefail
DIR=${1:?usage: make_http_seeds.sh DIR}
mkdir -p "$DIR"
exec /usr/bin/python3 - "$DIR" <<'PY'
import io, json, re, sys, tarfile

out = sys.argv[1]
n = 0

def seed(data):
    global n
    n += 1
    with open(f"{out}/seed{n:03d}", "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# The length of each placeholder's value (tests/fuzz/fuzz_http.c).
VALUE_LEN = {"$ADMIN": 33, "$TEAM": 68, "$MODEL": 28, "$DATASET": 28, "$OMODEL": 28}

def sent_len(body):
    """len(body) once the harness has replaced the placeholders."""
    n = len(body)
    for ph in ("$DATASET", "$OMODEL", "$ADMIN", "$MODEL", "$TEAM"):
        k = body.count(ph.encode())
        body = body.replace(ph.encode(), b"")
        n += k * (VALUE_LEN[ph] - len(ph))
    return n

def req(method, path, body=None, token=None, ctype="application/json", extra="",
        chunked=False, version="HTTP/1.1", close=True):
    h = f"{method} {path} {version}\r\nHost: localhost\r\n"
    if token:
        h += f"Authorization: Bearer {token}\r\n"
    if body is not None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        if ctype:
            h += f"Content-Type: {ctype}\r\n"
        if chunked:
            h += "Transfer-Encoding: chunked\r\n"
            parts = [p for p in re.split(rb"(?<=,)", body) if p]  # never inside a placeholder
            body = b"".join(b"%x\r\n%s\r\n" % (sent_len(p), p) for p in parts) + b"0\r\n\r\n"
        else:
            h += f"Content-Length: {sent_len(body)}\r\n"
    if close:
        h += "Connection: close\r\n"
    return h.encode() + extra.encode() + b"\r\n" + (body or b"")

spec = {"version": 1, "method": "admm",
        "admm": {"iters": 1, "epochs_per_iter": 1, "rho": 1e-3, "rho_factor": 1.3},
        "retrain": {"epochs": 1},
        "layers": [{"match": "conv*", "prune": {"scheme": "irregular", "rate": 20}},
                   {"match": "fc*", "prune": {"scheme": "irregular", "rate": 60},
                    "quant": {"scheme": "kbit", "bits": 4, "per_channel": True}}]}
job = {"name": "j", "model_id": "$MODEL", "dataset_id": "$DATASET", "spec": spec,
       "pretrain": {"epochs": 1, "lr": 0.01, "batch": 64, "seed": 1},
       "export": {"format": "onnx", "qdq": False}, "priority": 5, "max_attempts": 3}

# Public, admin and team reads.
seed(req("GET", "/healthz"))
seed(req("GET", "/metrics", token="$ADMIN"))
seed(req("GET", "/api/v1/me", token="$TEAM"))
seed(req("GET", "/api/v1/me", token="$ADMIN"))
seed(req("GET", "/api/v1/teams?limit=2&cursor=1", token="$ADMIN"))
seed(req("GET", "/api/v1/tokens", token="$TEAM"))
seed(req("GET", "/api/v1/workers", token="$TEAM"))
seed(req("GET", "/api/v1/models", token="$TEAM"))
seed(req("GET", "/api/v1/models/$MODEL", token="$TEAM"))
seed(req("GET", "/api/v1/models/$OMODEL", token="$TEAM"))
seed(req("GET", "/api/v1/models/$MODEL/content", token="$TEAM"))
seed(req("GET", "/api/v1/datasets/$DATASET", token="$TEAM"))
seed(req("GET", "/api/v1/jobs?state=queued&limit=5", token="$TEAM"))
seed(req("GET", "/api/v1/jobs/job_x/events?after=3", token="$TEAM"))
seed(req("GET", "/api/v1/jobs/job_x/report", token="$TEAM"))
seed(req("GET", "/api/v1/artifacts/" + "a" * 64, token="$TEAM", extra='If-None-Match: "x"\r\n'))
seed(req("DELETE", "/api/v1/tokens/tok_x", token="$ADMIN"))
seed(req("POST", "/agent/v1/claim", {"worker_id": "w"}, token="$TEAM"))
# Writes.
seed(req("POST", "/api/v1/teams", {"name": "t2"}, token="$ADMIN"))
seed(req("POST", "/api/v1/tokens", {"team_id": "team_x", "scope": "agent", "name": "a",
                                    "expires_in_s": 60}, token="$ADMIN"))
seed(req("POST", "/api/v1/models", {"name": "m", "arch": "lenet5"}, token="$TEAM"))
seed(req("POST", "/api/v1/datasets", {"name": "d", "builtin": "fashion-mnist"}, token="$TEAM"))
seed(req("POST", "/api/v1/jobs", job, token="$TEAM", extra="Idempotency-Key: k 1\r\n"))
seed(req("POST", "/api/v1/jobs", job, token="$TEAM", chunked=True))
seed(req("POST", "/api/v1/jobs", dict(job, model_id="$OMODEL"), token="$TEAM"))
seed(req("POST", "/api/v1/jobs", dict(job, spec={"layers": [{"match": "*", "quant": {"scheme": "binary"}}]}),
         token="$TEAM"))
seed(req("POST", "/api/v1/jobs/job_x/cancel", token="$TEAM", body=""))
seed(req("POST", "/api/v1/jobs/job_x/retry", token="$TEAM", body="{}"))
seed(req("POST", "/api/v1/models?name=m&format=onnx", b"\x08\x07\x12\x00:\x00", token="$TEAM",
         ctype="application/octet-stream"))
# The edges that once overflowed: a long path (before auth), a 64-byte
# unknown field, a tar member name of 64 bytes.
seed(req("GET", "/" + "p" * 100))
seed(req("GET", "/api/v1/" + "\u00e9" * 60))
seed(req("POST", "/api/v1/teams", '{"' + "k" * 64 + '": 1}', token="$ADMIN"))
seed(req("POST", "/api/v1/jobs", '{"' + "\u00e9" * 40 + '": 1}', token="$TEAM"))
tar = io.BytesIO()
with tarfile.open(fileobj=tar, mode="w", format=tarfile.USTAR_FORMAT) as t:
    info = tarfile.TarInfo("n" * 64)
    info.size = 4
    t.addfile(info, io.BytesIO(b"\0\0\x08\x03"))
seed(req("POST", "/api/v1/datasets?name=d&format=idx", tar.getvalue(), token="$TEAM",
         ctype="application/x-tar"))
# Authorization and header variants.
seed(req("GET", "/api/v1/me", token=None, extra="Authorization: bearer   $TEAM\r\n"))
seed(req("GET", "/api/v1/me", extra="Authorization: Basic dXNlcjpwYXNz\r\n"))
seed(req("GET", "/api/v1/me", extra="Authorization: Bearer\r\n"))
seed(req("GET", "/api/v1/me", token="$TEAMx"))
seed(req("POST", "/api/v1/teams", {"name": "x"}, token="$ADMIN", ctype="application/jsonx"))
seed(req("POST", "/api/v1/teams", "[1,2]", token="$ADMIN", ctype="Application/JSON; charset=utf-8"))
seed(req("POST", "/api/v1/teams", '{"name": "a", "name": "b"}', token="$ADMIN"))
seed(req("POST", "/api/v1/teams", {"name": "x"}, token="$ADMIN", extra="Expect: 100-continue\r\n"))
seed(b"POST /api/v1/teams HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer $ADMIN\r\n"
     b"Content-Length: 12x\r\n\r\n{\"name\":\"x\"}")
seed(b"GET /healthz HTTP/1.0\r\n\r\n")
seed(b"GET /healthz HTTP/1.1\r\n\r\n")
seed(b"GET /healthz HTTP/2.0\r\nHost: a\r\n\r\n")
seed(b"HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
seed(b"GET /healthz?a=%zz&b HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 3000 + b"\r\n\r\n")
# Keep-alive, pipelined.
seed(req("GET", "/healthz", close=False) + req("GET", "/api/v1/me", token="$TEAM", close=False) +
     req("POST", "/api/v1/teams", {"name": "p"}, token="$ADMIN"))
PY
