#!/usr/bin/env python3
"""End-to-end checks of dnnpress-server alone, over real HTTP on loopback,
against the real process and a real SQLite file (docs/api.md).

usage: server_api.py BUILD_DIR [NAME...]   (NAME: run only check_NAME, e.g. tokens)

Each check prints one line; the first failure stops the run with exit 1.
Standard library only (run with /usr/bin/python3).
"""
import http.client
import io
import json
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import urllib.parse
import shutil
import tarfile
import tempfile
import threading
import time

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build/release"
SERVER = os.path.join(BUILD, "dnnpress-server")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ADMIN = "e2e-admin-token-0123456789"


CLEANUP = []  # servers to kill and directories to remove, whatever happens


def fail(msg):
    print("server_api: FAIL: " + msg, flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def ok(msg):
    print("server_api: ok: " + msg, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, data_dir, extra=(), port=None, admin=ADMIN):
        self.port = port or free_port()
        self.data_dir = data_dir
        self.log = open(os.path.join(os.path.dirname(data_dir), "server-%d.log" % self.port), "ab")
        env = dict(os.environ, DNNPRESS_ADMIN_TOKEN=admin)
        if admin is None:
            del env["DNNPRESS_ADMIN_TOKEN"]
        CLEANUP.append(self)
        # These checks hammer single routes in loops as fast as the machine
        # allows: per-token rate limits stay out of the way here
        # (tests/e2e/limits.py checks them), unless a check sets them.
        if not any(a.startswith("--rate-limit") for a in extra):
            extra = ["--rate-limit-rps", "0"] + list(extra)
        self.proc = subprocess.Popen(
            [SERVER, "--listen", "127.0.0.1:%d" % self.port, "--data-dir", data_dir] + list(extra),
            stdout=self.log, stderr=self.log, env=env)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if self.req("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        fail("server did not start (see %s)" % self.log.name)

    def req(self, method, path, body=None, token=None, headers=None, raw=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        if raw is not None:
            data = raw
            h.setdefault("Content-Type", "application/octet-stream")
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        payload = r.read()
        hdrs = dict(r.getheaders())
        c.close()
        try:
            doc = json.loads(payload) if payload and hdrs.get("Content-Type", "").startswith("application/json") else payload
        except ValueError:
            doc = payload
        return r.status, doc, hdrs

    def req_expect(self, method, path, length, token, content_type):
        """Sends only the headers with Expect: 100-continue (as curl does for
        large bodies) and returns the status the server answers before any
        body byte is sent."""
        c = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        c.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Content-Type: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                   % (method, path, token, content_type, length)).encode())
        head = c.recv(4096).decode(errors="replace")
        c.close()
        return int(head.split(" ")[1]), head

    def req_chunked(self, method, path, chunks, token, content_type):
        """Streams the body chunked (no Content-Length) over a raw socket.
        Returns (status, doc, {}); (None, None, {}) when the server closed
        the connection with a reset before its answer could be read (it
        stops reading a chunked body at the limit, and the rest the client
        had in flight makes the close a reset)."""
        c = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        head = ("%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\n"
                "Transfer-Encoding: chunked\r\n\r\n" % (method, path, token, content_type))
        try:
            c.sendall(head.encode())
            for ch in chunks:
                c.sendall(b"%x\r\n" % len(ch) + ch + b"\r\n")
            c.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        got = b""
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                got += b
        except OSError:
            pass
        c.close()
        if not got:
            return None, None, {}
        head, _, body = got.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, json.loads(body) if body else None, {}

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            fail("server did not stop on signal %d" % sig)
        self.log.close()


def expect(resp, status, what, code=None, contains=None):
    st, doc, _ = resp
    if st != status:
        fail("%s: expected %d, got %d: %r" % (what, status, st, doc))
    if code is not None and (not isinstance(doc, dict) or doc.get("code") != code):
        fail("%s: expected code %s, got %r" % (what, code, doc))
    if contains is not None:
        msg = doc.get("message", "") if isinstance(doc, dict) else ""
        if contains not in msg:
            fail("%s: message %r does not name %r" % (what, msg, contains))
    return doc


# ---- fixtures ------------------------------------------------------------

_ONNX = []


def onnx_bytes():
    """A real ONNX model: LeNet-300-100 trained for a few steps by the
    worker and exported by it (the server runs uploads through the ONNX
    importer, so framing alone is not enough)."""
    if not _ONNX:
        d = tempfile.mkdtemp(prefix="dp-onnx-")
        ckpt, onnx = os.path.join(d, "m.safetensors"), os.path.join(d, "m.onnx")
        w = os.path.join(BUILD, "dnnpress-worker")
        subprocess.run([w, "train", "--model", "lenet-300-100", "--data",
                        "idx:/usr/share/datasets/fashion-mnist", "--epochs", "1", "--limit-train",
                        "64", "--limit-test", "32", "--threads", "1", "--quiet", "--out", ckpt],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run([w, "export", "--model", ckpt, "--out", onnx], check=True,
                       stdout=subprocess.DEVNULL)
        with open(onnx, "rb") as f:
            _ONNX.append(f.read())
        shutil.rmtree(d, ignore_errors=True)
    return _ONNX[0]


def tar_of(members, mode="w", fmt=tarfile.USTAR_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as t:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def idx_images(n, rows=4, cols=4):
    return struct.pack(">BBBBIII", 0, 0, 8, 3, n, rows, cols) + bytes(n * rows * cols)


def idx_labels(n):
    return struct.pack(">BBBBI", 0, 0, 8, 1, n) + bytes(i % 10 for i in range(n))


def idx_tar(n_train=10, n_test=5, label_n=None):
    return tar_of([
        ("train-images-idx3-ubyte", idx_images(n_train)),
        ("train-labels-idx1-ubyte", idx_labels(label_n if label_n is not None else n_train)),
        ("t10k-images-idx3-ubyte", idx_images(n_test)),
        ("t10k-labels-idx1-ubyte", idx_labels(n_test)),
    ])


def npy_of(descr, shape, item, data_len=None):
    n = 1
    for d in shape:
        n *= d
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else ""))
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return (b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() +
            bytes(n * item if data_len is None else data_len))


SPEC = {"version": 1, "method": "admm",
        "layers": [{"match": "fc*", "prune": {"scheme": "irregular", "rate": 8}}]}


# ---- the checks ------------------------------------------------------------

def check_openapi():
    routes = subprocess.run([SERVER, "--print-routes"], capture_output=True, text=True,
                            check=True).stdout.split("\n")
    with open(os.path.join(ROOT, "docs", "openapi.json")) as f:
        paths = json.load(f)["paths"]
    n = 0
    for line in routes:
        if not line:
            continue
        method, path = line.split(" ", 1)
        check(path in paths and method.lower() in paths[path],
              "route %s %s is not in docs/openapi.json" % (method, path))
        n += 1
    documented = sum(len(v) for v in paths.values())
    check(documented == n, "docs/openapi.json has %d operations, the server %d" % (documented, n))
    ok("openapi: all %d routes documented, nothing extra" % n)


def setup_team(s, name):
    team = expect(s.req("POST", "/api/v1/teams", {"name": name}, ADMIN), 201, "create team")
    tok = expect(s.req("POST", "/api/v1/tokens", {"team_id": team["id"], "scope": "team",
                                                   "name": "e2e"}, ADMIN), 201, "team token")
    return team["id"], tok["token"]


def submit(s, tok, model, dataset, key=None, name="job", priority=5):
    h = {"Idempotency-Key": key} if key else None
    return s.req("POST", "/api/v1/jobs", {"name": name, "model_id": model, "dataset_id": dataset,
                                          "pretrain": {"epochs": 1}, "spec": SPEC,
                                          "priority": priority}, tok, headers=h)


def metric_2xx(s):
    st, body, _ = s.req("GET", "/metrics", token=ADMIN)
    check(st == 200, "GET /metrics")
    for line in body.decode().splitlines():
        if line.startswith('dnnpress_http_requests_total{class="2xx"} '):
            return int(line.split()[-1])
    fail("/metrics has no 2xx request counter")


def count_jobs(s, tok):
    n, cursor = 0, ""
    while True:
        doc = expect(s.req("GET", "/api/v1/jobs?limit=200&cursor=" + cursor, token=tok), 200, "list")
        n += len(doc["items"])
        if not doc["next_cursor"]:
            return n
        cursor = doc["next_cursor"]


# ---- token lifetime, and what each scope sees ------------------------------

def read_sse(s, path, token, after=None, timeout=30):
    """The events of a finished stream as (id, event, data) tuples."""
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=timeout)
    h = {"Authorization": "Bearer " + token}
    if after is not None:
        h["Last-Event-ID"] = str(after)
    c.request("GET", path, headers=h)
    r = c.getresponse()
    check(r.status == 200, "SSE %s: %d" % (path, r.status))
    out, cur = [], {}
    for raw in r:
        line = raw.decode().rstrip("\n")
        if line == "":
            if cur:
                out.append((int(cur.get("id", "0")), cur.get("event"), cur.get("data")))
            cur = {}
        elif not line.startswith(":"):
            k, v = line.split(": ", 1)
            cur[k] = v
    c.close()
    return out


def scoped_server(tmp, name):
    """A fresh server with teams A and B: (server, team_a, tok_a, team_b, tok_b)."""
    os.makedirs(os.path.join(tmp, name))
    s = Server(os.path.join(tmp, name, "data"), ["--lease-s", "5"])
    return (s,) + setup_team(s, "tok-a") + setup_team(s, "tok-b")


def stop_clean(s):
    s.stop()
    check(s.proc.returncode == 0, "clean stop")


def check_token_list(tmp):
    """GET /api/v1/tokens: admin sees all, a team its own, nobody a secret."""
    s, team_a, tok_a, team_b, tok_b = scoped_server(tmp, "token-list")
    t2 = expect(s.req("POST", "/api/v1/tokens", {"team_id": team_a, "scope": "team", "name": "t2"},
                      ADMIN), 201, "second team token")
    expect(s.req("GET", "/api/v1/me", token=tok_a), 200, "use tok_a")
    every = expect(s.req("GET", "/api/v1/tokens?limit=200", token=ADMIN), 200, "admin lists tokens")
    ids = {t["id"] for t in every["items"]}
    check(t2["id"] in ids and any(t["scope"] == "admin" for t in every["items"]),
          "admin sees every token: %r" % every)
    for t in every["items"]:
        check("token" not in t and "hash" not in t and not any(
            isinstance(v, str) and v.startswith("dpt_") for v in t.values()),
            "a listed token shows its secret: %r" % t)
        check({"id", "name", "scope", "team_id", "created_at", "expires_at", "revoked_at",
               "last_used_at", "origin"} <= set(t), "token fields: %r" % t)
    mine = expect(s.req("GET", "/api/v1/tokens", token=tok_a), 200, "team lists its tokens")["items"]
    check(mine and all(t["team_id"] == team_a for t in mine) and t2["id"] in {t["id"] for t in mine},
          "team A sees only its own tokens: %r" % mine)
    used = [t for t in mine if t["last_used_at"]]
    check(used, "last_used_at is recorded: %r" % mine)
    expect(s.req("GET", "/api/v1/tokens", token="dpt_nope"), 401, "listing needs a token")
    ok("tokens: admin lists all, a team its own, no secrets, last_used_at recorded")
    stop_clean(s)


def check_token_revoke(tmp):
    """DELETE /api/v1/tokens/{id}, including a parked claim and an open stream."""
    s, team_a, tok_a, team_b, tok_b = scoped_server(tmp, "token-revoke")
    t2 = expect(s.req("POST", "/api/v1/tokens", {"team_id": team_a, "scope": "team", "name": "t2"},
                      ADMIN), 201, "second team token")
    expect(s.req("DELETE", "/api/v1/tokens/%s" % t2["id"], token=tok_b), 404,
           "team B revokes team A's token", "not_found")
    expect(s.req("GET", "/api/v1/me", token=t2["token"]), 200, "t2 still works")
    admin_id = [t["id"] for t in expect(s.req("GET", "/api/v1/tokens", token=ADMIN), 200,
                                        "list")["items"] if t["scope"] == "admin"][0]
    expect(s.req("DELETE", "/api/v1/tokens/%s" % admin_id, token=tok_a), 404,
           "a team revokes the admin token")
    rv = expect(s.req("DELETE", "/api/v1/tokens/%s" % t2["id"], token=tok_a), 200, "revoke t2")
    check(rv["revoked_at"] and rv["id"] == t2["id"] and "token" not in rv, "revoked token: %r" % rv)
    expect(s.req("GET", "/api/v1/me", token=t2["token"]), 401, "revoked token", "unauthorized",
           "token revoked")
    expect(s.req("DELETE", "/api/v1/tokens/%s" % t2["id"], token=ADMIN), 200, "revoke twice")
    expect(s.req("DELETE", "/api/v1/tokens/tok_000000000000000000000000", token=ADMIN), 404,
           "revoke an unknown token")
    expect(s.req("DELETE", "/api/v1/tokens/%s" % admin_id, token=ADMIN), 409,
           "revoke the last admin token", contains="last")
    ok("revocation: 401 'token revoked' at once; another team's token 404; the last admin token 409")

    # -- a parked long-poll and an open event stream see the revocation
    agent = expect(s.req("POST", "/api/v1/tokens", {"team_id": team_a, "scope": "agent"}, ADMIN),
                   201, "agent token")
    w = expect(s.req("POST", "/agent/v1/register", {"name": "w", "version": "1", "capabilities":
                                                    ["export"], "device": {"cpu": "x"}},
                     agent["token"]), 201, "register")
    got = {}

    def poll():
        t0 = time.time()
        got["r"] = s.req("POST", "/agent/v1/claim", {"worker_id": w["worker_id"],
                                                     "capabilities": ["export"], "wait_s": 20},
                         agent["token"])
        got["dt"] = time.time() - t0

    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.5)
    expect(s.req("DELETE", "/api/v1/tokens/%s" % agent["id"], token=ADMIN), 200, "revoke agent")
    th.join(25)
    check(got["r"][0] == 401 and "token revoked" in got["r"][1].get("message", "") and got["dt"] < 5,
          "a parked claim answers 401 'token revoked' (%r after %.1fs)" % (got["r"][:2], got["dt"]))

    m = expect(s.req("POST", "/api/v1/models", {"name": "m", "arch": "lenet5"}, tok_a), 201, "model")
    d = expect(s.req("POST", "/api/v1/datasets", {"name": "d", "builtin": "fashion-mnist"}, tok_a),
               201, "dataset")
    watcher = expect(s.req("POST", "/api/v1/tokens", {"team_id": team_a, "scope": "team"}, ADMIN),
                     201, "watcher token")
    job = expect(submit(s, tok_a, m["id"], d["id"], name="watched"), 201, "submit")
    seen = {}

    def stream():
        t0 = time.time()
        seen["ev"] = read_sse(s, "/api/v1/jobs/%s/events" % job["id"], watcher["token"])
        seen["dt"] = time.time() - t0

    th = threading.Thread(target=stream)
    th.start()
    time.sleep(0.5)
    expect(s.req("DELETE", "/api/v1/tokens/%s" % watcher["id"], token=tok_a), 200, "revoke watcher")
    th.join(20)
    check("dt" in seen and seen["dt"] < 5, "an open event stream ends when its token is revoked")
    check(seen["ev"] and seen["ev"][-1][1] == "error" and "token revoked" in seen["ev"][-1][2],
          "the stream's last frame says why: %r" % seen["ev"][-1:])
    expect(s.req("GET", "/api/v1/jobs/%s/events" % job["id"], token=watcher["token"]), 401,
           "reconnecting with the revoked token", contains="token revoked")
    ok("revocation reaches a parked claim (401 after %.1fs) and an open event stream (ended after "
       "%.1fs)" % (got["dt"] - 0.5, seen["dt"] - 0.5))
    stop_clean(s)


def check_token_expiry(tmp):
    """expires_in_s / expires_at at creation; 401 'token expired' after."""
    s, team_a, tok_a, team_b, tok_b = scoped_server(tmp, "token-expiry")
    short = expect(s.req("POST", "/api/v1/tokens", {"team_id": team_a, "scope": "team",
                                                     "expires_in_s": 1}, ADMIN), 201, "expiring")
    check(short["expires_at"], "expires_at shown at creation: %r" % short)
    expect(s.req("GET", "/api/v1/me", token=short["token"]), 200, "before expiry")
    time.sleep(1.3)
    expect(s.req("GET", "/api/v1/me", token=short["token"]), 401, "expired token", "unauthorized",
           "token expired")
    at = expect(s.req("POST", "/api/v1/tokens", {"team_id": team_a, "scope": "team",
                                                  "expires_at": "2999-01-02T03:04:05Z"}, ADMIN),
                201, "expires_at")
    check(at["expires_at"].startswith("2999-01-02T03:04:05"), "expires_at kept: %r" % at)
    expect(s.req("POST", "/api/v1/tokens", {"team_id": team_a, "scope": "team",
                                            "expires_at": "2001-01-01T00:00:00Z"}, ADMIN), 400,
           "expires_at in the past", contains="expires_at")
    expect(s.req("POST", "/api/v1/tokens", {"team_id": team_a, "scope": "team",
                                            "expires_at": "tomorrow"}, ADMIN), 400,
           "expires_at not RFC 3339", contains="expires_at")
    expect(s.req("POST", "/api/v1/tokens", {"team_id": team_a, "scope": "team", "expires_in_s": 5,
                                            "expires_at": "2999-01-01T00:00:00Z"}, ADMIN), 400,
           "both expiries", contains="expires_in_s")
    ok("expiry: expires_in_s and expires_at; an expired token answers 401 'token expired'")
    stop_clean(s)


def check_metrics_scope(tmp):
    """/metrics shows every team's counts: admin only."""
    s, team_a, tok_a, team_b, tok_b = scoped_server(tmp, "metrics-scope")
    expect(s.req("GET", "/metrics"), 401, "/metrics without a token", "unauthorized")
    expect(s.req("GET", "/metrics", token=tok_a), 403, "/metrics with a team token", "forbidden")
    check(s.req("GET", "/metrics", token=ADMIN)[0] == 200, "/metrics with the admin token")
    ok("/metrics: 401 without a token, 403 for a team, 200 for admin")
    stop_clean(s)


def check_workers_scope(tmp):
    """/workers: bounded device descriptions, no other team's workers."""
    s, team_a, tok_a, team_b, tok_b = scoped_server(tmp, "workers-scope")
    agent_b = expect(s.req("POST", "/api/v1/tokens", {"team_id": team_b, "scope": "agent"}, ADMIN),
                     201, "agent B")["token"]
    big = {"blob": "x" * (20 << 10)}
    expect(s.req("POST", "/agent/v1/register", {"name": "big", "capabilities": ["train"],
                                                "device": big}, agent_b), 413,
           "a 20 KiB device description", "too_large", "body.device")
    deep = {}
    for _ in range(40):
        deep = {"d": deep}
    expect(s.req("POST", "/agent/v1/register", {"name": "deep", "capabilities": ["train"],
                                                "device": deep}, agent_b), 400,
           "a device description 40 levels deep", contains="body.device")
    wb = expect(s.req("POST", "/agent/v1/register", {"name": "b-worker", "capabilities": ["train"],
                                                     "device": {"secret": "team B's"}}, agent_b),
                201, "register B's worker")
    seen_a = expect(s.req("GET", "/api/v1/workers?limit=200", token=tok_a), 200, "A lists workers")
    check(wb["worker_id"] not in {x["id"] for x in seen_a["items"]},
          "team A sees team B's worker: %r" % seen_a)
    seen_admin = expect(s.req("GET", "/api/v1/workers?limit=200", token=ADMIN), 200, "admin lists")
    check(wb["worker_id"] in {x["id"] for x in seen_admin["items"]}, "admin sees every worker")
    ok("/workers: device descriptions bounded (413 size, 400 depth); team A does not see B's worker")
    stop_clean(s)


# ---- the device farm: device tokens, devices, profile tasks ------------------

def check_devices(tmp):
    """Device scope against every kind of route; which devices a job's profile
    targets (its team's and shared ones, 422 when none); a device claims only
    its own profile tasks, one at a time; drain, offline and re-lease, remove."""
    os.makedirs(os.path.join(tmp, "devices"))
    s = Server(os.path.join(tmp, "devices", "data"), ["--lease-s", "2", "--backoff-ms", "50"])
    team_a, tok_a = setup_team(s, "dev-a")
    team_b, tok_b = setup_team(s, "dev-b")

    def tok(body, by=ADMIN, status=201, what="device token"):
        return expect(s.req("POST", "/api/v1/tokens", body, by), status, what)

    # Who may make device tokens: the admin (shared or a team's), a team for itself only.
    dev_a = tok({"scope": "device", "name": "a"}, by=tok_a, what="team A makes a device token")
    check(dev_a["team_id"] == team_a and dev_a["scope"] == "device", "team device token: %r" % dev_a)
    expect(s.req("POST", "/api/v1/tokens", {"scope": "agent"}, tok_a), 403,
           "a team makes an agent token", "forbidden")
    expect(s.req("POST", "/api/v1/tokens", {"scope": "team"}, tok_a), 403,
           "a team makes a team token", "forbidden")
    expect(s.req("POST", "/api/v1/tokens", {"scope": "device", "team_id": team_b}, tok_a), 400,
           "team A makes a device token for team B", contains="team_id")
    dev_b = tok({"scope": "device", "team_id": team_b, "name": "b"})["token"]
    shared = tok({"scope": "device", "team_id": None, "name": "s"})
    check(shared["team_id"] is None, "shared device token: %r" % shared)
    dev_a, dev_s = dev_a["token"], shared["token"]
    me = expect(s.req("GET", "/api/v1/me", token=dev_s), 200, "device /me")
    check(me["scope"] == "device" and me["shared"] is True, "/me of a shared device: %r" % me)
    agent_a = tok({"scope": "agent", "team_id": team_a})["token"]

    # A device token is not a team, admin or plain agent.
    for method, path, body in (("GET", "/api/v1/jobs", None), ("GET", "/api/v1/models", None),
                               ("GET", "/api/v1/devices", None), ("GET", "/api/v1/workers", None),
                               ("POST", "/api/v1/teams", {"name": "x"}),
                               ("POST", "/api/v1/tokens", {"scope": "device"}),
                               ("GET", "/api/v1/tokens", None), ("GET", "/metrics", None),
                               ("POST", "/api/v1/devices/dev_x/drain", {}),
                               ("DELETE", "/api/v1/devices/dev_x", None)):
        expect(s.req(method, path, body, dev_a), 403, "device token on %s %s" % (method, path),
               "forbidden")
    # ...and a team token cannot act as a device.
    for path, body in (("/agent/v1/register", {"name": "t", "capabilities": ["profile"]}),
                       ("/agent/v1/claim", {"worker_id": "wkr_x", "capabilities": ["profile"]})):
        expect(s.req("POST", path, body, tok_a), 403, "team token on " + path, "forbidden")
    expect(s.req("POST", "/agent/v1/register", {"name": "a-1", "capabilities": ["train"]}, dev_a),
           400, "a device registers for train", contains="profile")
    expect(s.req("POST", "/agent/v1/register", {"name": "w", "capabilities": ["train"],
                                                "labels": {"k": "v"}}, agent_a),
           400, "an agent registers labels", contains="labels")
    expect(s.req("POST", "/agent/v1/register", {"name": "a-1", "capabilities": ["profile"],
                                                "labels": {"Bad Key": "v"}}, dev_a),
           400, "a label key with a space", contains="labels")

    def register(name, token, labels, desc):
        return expect(s.req("POST", "/agent/v1/register", {
            "name": name, "capabilities": ["profile"], "labels": labels, "device": desc}, token),
            201, "register device " + name)
    ra = register("a-1", dev_a, {"board": "x"}, {"isa": ["avx2"], "cpu": "A"})
    rs = register("s-1", dev_s, {"board": "y"}, {"isa": ["avx2", "avx512"], "cpu": "S"})
    rb = register("b-1", dev_b, {"board": "x"}, {"isa": ["avx512"], "cpu": "B"})
    expect(s.req("POST", "/agent/v1/register", {"name": "a-1", "capabilities": ["profile"]},
                 dev_s), 409, "another token takes device a-1's name")
    ids = {"a-1": ra["device_id"], "s-1": rs["device_id"], "b-1": rb["device_id"]}

    def devices(token):
        doc = expect(s.req("GET", "/api/v1/devices", token=token), 200, "list devices")
        return {d["name"]: d for d in doc["items"]}
    seen_a, seen_all = devices(tok_a), devices(ADMIN)
    check(set(seen_a) == {"a-1", "s-1"}, "team A sees its device and the shared one: %r" % seen_a)
    check(set(seen_all) == {"a-1", "s-1", "b-1"}, "the admin sees every device")
    check(seen_all["s-1"]["shared"] and seen_all["s-1"]["description"]["cpu"] == "S"
          and seen_all["a-1"]["labels"] == {"board": "x"} and seen_all["a-1"]["state"] == "idle",
          "device objects: %r" % seen_all)

    # Profile selectors: by labels, by description (isa), by name glob.
    om = expect(s.req("POST", "/api/v1/models?name=m&format=onnx", raw=onnx_bytes(), token=tok_a),
                201, "A's model")
    ds = expect(s.req("POST", "/api/v1/datasets?name=d&format=idx", raw=idx_tar(n_train=12),
                      token=tok_a), 201, "A's dataset")

    def job(token, model, dataset, selectors, compile_=True):
        body = {"model_id": model, "dataset_id": dataset, "spec": SPEC,
                "profile": {"devices": selectors, "runs": 3}}
        if compile_:
            body["compile"] = {"target": "portable"}
        return s.req("POST", "/api/v1/jobs", body, token)
    expect(job(tok_a, om["id"], ds["id"], [{"name": "*"}], compile_=False), 400,
           "profile without compile", contains="compile")
    expect(job(tok_a, om["id"], ds["id"], [{"name": 3}]), 400, "a selector value not a string",
           contains="profile.devices")
    expect(job(tok_a, om["id"], ds["id"], [{"name": "b-*"}]), 422,
           "team A's profile on team B's device", contains="profile.devices")
    expect(job(tok_a, om["id"], ds["id"], [{"board": "z"}]), 422, "a selector nothing matches")
    one = expect(job(tok_a, om["id"], ds["id"], [{"isa": "avx512"}]), 201, "isa selector")
    prof = [t for t in one["tasks"] if t["type"] == "profile"]
    check([t["device_id"] for t in prof] == [ids["s-1"]],
          "{isa: avx512} for team A is the shared device only: %r" % prof)
    j = expect(job(tok_a, om["id"], ds["id"], [{"board": "x"}, {"name": "s-?"}]), 201, "two")
    prof = [t for t in j["tasks"] if t["type"] == "profile"]
    check(sorted(t["device_id"] for t in prof) == sorted([ids["a-1"], ids["s-1"]]),
          "labels or name: A's device and the shared one, not B's: %r" % prof)
    s.req("POST", "/api/v1/jobs/%s/cancel" % one["id"], {}, tok_a)
    j2 = expect(job(tok_a, om["id"], ds["id"], [{"name": "?-1"}]), 201, "a second job on both")

    # Drive j's chain to its compile with a plain agent of team A.
    wa = expect(s.req("POST", "/agent/v1/register", {"name": "wa", "capabilities": [
        "compress", "retrain", "export", "compile", "profile"]}, agent_a), 201, "agent")["worker_id"]
    outs = {"compress": ("model", "report"), "retrain": ("model", "report"), "export": ("onnx",),
            "compile": ("code", "compile_report")}
    for _ in range(8):
        t = expect(s.req("POST", "/agent/v1/claim", {"worker_id": wa, "capabilities": [
            "compress", "retrain", "export", "compile", "profile"], "wait_s": 5}, agent_a),
            200, "agent claims")["task"]
        check(t["job_id"] in (j["id"], j2["id"]) and t["type"] != "profile", "agent task: %r" % t)
        done = {}
        for kind in outs[t["type"]]:
            done[kind] = expect(s.req("PUT", "/agent/v1/tasks/%s/artifacts/%s?fence=%d" % (
                t["id"], kind, t["fence"]), raw=(kind + t["id"]).encode(), token=agent_a),
                201, "upload " + kind)["sha256"]
        expect(s.req("POST", "/agent/v1/tasks/%s/complete" % t["id"],
                     {"fence": t["fence"], "outputs": done}, agent_a), 200, "complete")
    expect(s.req("POST", "/agent/v1/claim", {"worker_id": wa, "capabilities": ["profile"],
                                             "wait_s": 0}, agent_a), 204,
           "a plain agent never takes a profile task")

    def claim(reg, token, wait=0):
        st, doc, _ = s.req("POST", "/agent/v1/claim", {"worker_id": reg["worker_id"],
                                                        "capabilities": ["profile"],
                                                        "wait_s": wait}, token)
        return st, (doc["task"] if st == 200 else doc)
    st, _ = claim(rb, dev_b)
    check(st == 204, "team B's device gets nothing of team A's job: %d" % st)
    # An idle device that keeps polling stays idle past a lease length (2 s):
    # its empty claims record that it was seen.
    t_end = time.time() + 3
    while time.time() < t_end:
        claim(rb, dev_b, 1)
    check(devices(ADMIN)["b-1"]["state"] == "idle",
          "a polling device is not offline: %r" % devices(ADMIN)["b-1"])
    st, ta = claim(ra, dev_a, 5)
    check(st == 200 and ta["device_id"] == ids["a-1"] and ta["type"] == "profile"
          and ta["job_id"] == j["id"]
          and ta["inputs"]["code"]["sha256"] and ta["inputs"]["dense"]["sha256"] == om["sha256"]
          and ta["params"]["profile"]["runs"] == 3, "a-1 claims its own task: %r" % (ta,))
    st, _ = claim(ra, dev_a)
    check(st == 204, "a device takes one profile task at a time, though j2's is ready (got %d)"
          % st)
    st, code = s.req("GET", "/agent/v1/blobs/%s" % ta["inputs"]["code"]["sha256"], token=dev_a)[:2]
    check(st == 200 and code == b"code" + j["tasks"][3]["id"].encode(),
          "the device downloads its task's code bundle")
    check(devices(tok_a)["a-1"]["state"] == "busy", "a-1 is busy")
    def finish(t):
        sha = expect(s.req("PUT", "/agent/v1/tasks/%s/artifacts/profile?fence=%d" % (
            t["id"], t["fence"]), raw=b'{"speedup": 2}', token=dev_s), 201, "upload")["sha256"]
        expect(s.req("POST", "/agent/v1/tasks/%s/complete" % t["id"], {
            "fence": t["fence"], "outputs": {"profile": sha}}, dev_s), 200, "s-1 completes")
    st, tsk = claim(rs, dev_s, 5)
    check(st == 200 and tsk["device_id"] == ids["s-1"], "s-1 claims its own task: %r" % (tsk,))
    finish(tsk)
    check(devices(ADMIN)["s-1"]["tasks_run"] == 1, "s-1 counts its run")

    # a-1 goes silent mid-profile: its lease expires, it reads offline, and
    # its task moves to the other candidate (s-1 runs its own j2 task first).
    deadline = time.time() + 20
    moved, n_own = None, 0
    while time.time() < deadline and moved is None:
        st, t = claim(rs, dev_s, 1)
        if st == 200 and t["id"] == ta["id"]:
            moved = t
        elif st == 200:
            check(t["device_id"] == ids["s-1"], "s-1 gets a task for s-1: %r" % t)
            n_own += 1
            finish(t)
    check(moved is not None and moved["id"] == ta["id"] and moved["device_id"] == ids["s-1"],
          "a-1's task is re-leased to s-1 once a-1 is offline: %r" % (moved,))
    check(devices(tok_a)["a-1"]["state"] == "offline", "a-1 reads offline")
    jv = expect(s.req("GET", "/api/v1/jobs/%s" % j["id"], token=tok_a), 200, "job")
    moved_row = [t for t in jv["tasks"] if t["id"] == ta["id"]][0]
    check(moved_row["device_id"] == ids["s-1"] and moved_row["errors"][0]["kind"] == "lease_expired",
          "the job shows the move: %r" % moved_row)

    # Latency tables (auto.objective "latency"): a device uploads its own,
    # agents and devices read the newest among the devices a selector
    # matches that their team may use; team tokens use neither route.
    tbl = {"arch": "lenet5", "scheme": "irregular", "method": "compile+bench",
           "layers": [{"name": "conv1", "rates": [1, 4], "ms": [1.0, 0.5]}]}
    expect(s.req("PUT", "/agent/v1/latency", tbl, tok_a), 403, "a team token uploads a table",
           "forbidden")
    expect(s.req("PUT", "/agent/v1/latency", tbl, agent_a), 403, "an agent uploads a table")
    bad = dict(tbl, layers=[{"name": "conv1", "rates": [4, 1], "ms": [1.0, 0.5]}])
    expect(s.req("PUT", "/agent/v1/latency", bad, dev_a), 400, "rates descending",
           contains="latency table")
    expect(s.req("PUT", "/agent/v1/latency", dict(tbl, arch="../x"), dev_a), 400, "a bad arch",
           contains="arch")
    put = expect(s.req("PUT", "/agent/v1/latency", tbl, dev_a), 200, "a-1 uploads its table")
    check(put["device"] == "a-1" and put["device_id"] == ids["a-1"], "upload answer: %r" % put)
    expect(s.req("PUT", "/agent/v1/latency", dict(tbl, layers=[
        {"name": "conv1", "rates": [1], "ms": [9.0]}]), dev_b), 200, "b-1 uploads its table")
    q = "/agent/v1/latency?arch=lenet5&scheme=irregular&device="

    def sel(d):
        return urllib.parse.quote(json.dumps(d))
    expect(s.req("GET", q + sel({"board": "x"}), token=tok_a), 403, "a team token reads a table",
           "forbidden")
    got = expect(s.req("GET", q + sel({"board": "x"}), token=agent_a), 200, "agent A reads")
    check(got["device"] == "a-1" and got["layers"][0]["ms"] == [1.0, 0.5] and got["measured_at"],
          "team A's agent gets a-1's table, never team B's b-1: %r" % got)
    expect(s.req("GET", q + sel({"board": "x"}), token=dev_s), 404,
           "a shared device sees no team's table", contains="no latency table")
    expect(s.req("GET", q + sel({"name": "b-1"}), token=agent_a), 404, "B's device for A")
    expect(s.req("GET", q.replace("irregular", "pattern") + sel({"board": "x"}), token=agent_a),
           404, "another scheme", contains="no latency table")
    expect(s.req("GET", q + "%5B1%5D", token=agent_a), 400, "a selector not an object",
           contains="device")
    expect(s.req("GET", "/agent/v1/latency?arch=lenet5&scheme=irregular", token=agent_a), 400,
           "no device selector", contains="device")
    expect(s.req("PUT", "/agent/v1/latency", dict(tbl, layers=[
        {"name": "conv1", "rates": [1, 4], "ms": [0.8, 0.3]}]), dev_a), 200, "a-1 measures again")
    got = expect(s.req("GET", q + sel({"name": "a-*"}), token=dev_a), 200, "a-1 reads its own")
    check(got["layers"][0]["ms"] == [0.8, 0.3], "the newer upload replaces the older: %r" % got)

    # drain and remove: a team its own devices, the admin any.
    expect(s.req("POST", "/api/v1/devices/%s/drain" % ids["a-1"], {}, tok_b), 404,
           "team B drains A's device")
    expect(s.req("POST", "/api/v1/devices/%s/drain" % ids["s-1"], {}, tok_a), 404,
           "team A drains the shared device")
    expect(s.req("POST", "/api/v1/devices/%s/drain" % ids["a-1"], {}, tok_a), 200, "A drains a-1")
    check(devices(ADMIN)["a-1"]["draining"] is True, "a-1 draining")
    expect(s.req("POST", "/api/v1/devices/%s/undrain" % ids["a-1"], {}, tok_a), 200, "undrain")
    expect(s.req("DELETE", "/api/v1/devices/%s" % ids["b-1"], token=tok_a), 404,
           "team A removes B's device")
    expect(s.req("DELETE", "/api/v1/devices/%s" % ids["a-1"], token=tok_a), 200, "A removes a-1")
    check("a-1" not in devices(ADMIN), "a removed device is not listed")
    st, doc = claim(ra, dev_a)
    check(st == 403, "a removed device's worker is refused: %d %r" % (st, doc))
    ok("devices: device scope refused on team/admin routes and a team token on agent routes; "
       "latency tables uploaded by a device only, read by agents and devices of the team; "
       "selectors by label, isa and name (422 when none of the team's match); one profile task "
       "per device, one at a time, never another team's; offline and re-lease; drain, remove")
    stop_clean(s)


def check_sse_ids(tmp):
    """SSE ids count the job's own events, not the server's."""
    s, team_a, tok_a, team_b, tok_b = scoped_server(tmp, "sse-ids")
    m = expect(s.req("POST", "/api/v1/models", {"name": "m", "arch": "lenet5"}, tok_a), 201, "model")
    d = expect(s.req("POST", "/api/v1/datasets", {"name": "d", "builtin": "fashion-mnist"}, tok_a),
               201, "dataset")
    for _ in range(3):  # other jobs' events, before and between
        expect(submit(s, tok_b, *[expect(s.req("POST", p, b, tok_b), 201, "B asset")["id"]
                                  for p, b in (("/api/v1/models", {"name": "m", "arch": "lenet5"}),
                                               ("/api/v1/datasets", {"name": "d",
                                                                     "builtin": "fashion-mnist"}))]),
               201, "B submits")
    j2 = expect(submit(s, tok_a, m["id"], d["id"], name="ids"), 201, "submit")
    expect(s.req("POST", "/api/v1/jobs/%s/cancel" % j2["id"], token=tok_a), 202, "cancel")
    ev = read_sse(s, "/api/v1/jobs/%s/events" % j2["id"], tok_a)
    check([e[0] for e in ev] == list(range(1, len(ev) + 1)),
          "a job's event ids are 1, 2, 3...: %r" % [e[0] for e in ev])
    again = read_sse(s, "/api/v1/jobs/%s/events" % j2["id"], tok_a, after=1)
    check(again == ev[1:], "Last-Event-ID resumes within the job: %r vs %r" % (again, ev))
    ok("SSE ids are per job (1..%d), Last-Event-ID resume exact" % len(ev))
    stop_clean(s)


def check_token_cli(tmp):
    """dnnpress token create --expires-in, token list, token revoke."""
    s, team_a, tok_a, team_b, tok_b = scoped_server(tmp, "token-cli")
    cli = os.path.join(BUILD, "dnnpress")
    env = dict(os.environ, DNNPRESS_SERVER="http://127.0.0.1:%d" % s.port,
               DNNPRESS_CONFIG="/nonexistent/dnnpress-cli.json")

    def run(token, *args):
        p = subprocess.run([cli, "--token", token] + list(args), env=env, capture_output=True,
                           text=True, timeout=30)
        return p.returncode, p.stdout, p.stderr

    rc, out, err = run(ADMIN, "--json", "token", "create", "--team", team_a, "--name", "ci",
                       "--expires-in", "2h")
    check(rc == 0, "token create --expires-in: %d %s" % (rc, err))
    made = json.loads(out)
    check(made["expires_at"] and made["token"].startswith("dpt_"), "created: %r" % made)
    rc, out, err = run(ADMIN, "token", "create", "--team", team_a, "--expires-in", "soon")
    check(rc == 2 and "--expires-in" in err, "a bad duration is a usage error: %d %s" % (rc, err))
    rc, out, err = run(tok_a, "token", "list")
    check(rc == 0 and made["id"] in out and "dpt_" not in out and "live" in out,
          "token list (team): %d %s %s" % (rc, out, err))
    rc, out, err = run(tok_b, "token", "revoke", made["id"])
    check(rc == 4, "team B revoking A's token: exit 4 (not found), got %d %s" % (rc, err))
    rc, out, err = run(tok_a, "token", "revoke", made["id"])
    check(rc == 0 and "revoked" in out, "token revoke: %d %s %s" % (rc, out, err))
    rc, out, err = run(made["token"], "list")
    check(rc == 3 and "token revoked" in err, "the revoked token: exit 3, %d %s" % (rc, err))
    rc, out, err = run(ADMIN, "token", "list")
    check(rc == 0 and "revoked" in out, "token list (admin) shows the revoked token: %s" % out)
    ok("CLI: token create --expires-in, token list, token revoke; a revoked token exits 3")
    stop_clean(s)


def check_admin_env(tmp):
    """A changed DNNPRESS_ADMIN_TOKEN revokes the previous one; a generated
    admin token stays until revoked; a revoked secret cannot come back."""
    data = os.path.join(tmp, "admin-env", "data")
    os.makedirs(os.path.dirname(data))
    old, new = "e2e-admin-old-0123456789", "e2e-admin-new-0123456789"
    s = Server(data, admin=None)
    with open(s.log.name, "rb") as f:
        log = f.read().decode(errors="replace")
    gen = [l for l in log.splitlines() if l.startswith("dpt_")]
    check(len(gen) == 1, "a first start without DNNPRESS_ADMIN_TOKEN prints one token: %r" % log)
    expect(s.req("GET", "/api/v1/teams", token=gen[0]), 200, "the generated admin token")
    s.stop()
    s = Server(data, admin=old)
    expect(s.req("GET", "/api/v1/teams", token=old), 200, "env admin token")
    expect(s.req("GET", "/api/v1/teams", token=gen[0]), 200, "the generated token stays valid")
    s.stop()
    s = Server(data, admin=new)
    expect(s.req("GET", "/api/v1/teams", token=new), 200, "the new env admin token")
    expect(s.req("GET", "/api/v1/teams", token=old), 401, "the old env admin token",
           "unauthorized", "token revoked")
    live = [t for t in expect(s.req("GET", "/api/v1/tokens", token=new), 200, "list")["items"]
            if t["scope"] == "admin" and not t["revoked_at"]]
    check(sorted(t["origin"] for t in live) == ["env", "generated"],
          "live admin tokens after the change: %r" % live)
    s.stop()
    env = dict(os.environ, DNNPRESS_ADMIN_TOKEN=old)
    p = subprocess.run([SERVER, "--listen", "127.0.0.1:%d" % free_port(), "--data-dir", data],
                       env=env, capture_output=True, text=True, timeout=20)
    check(p.returncode != 0 and "revoked" in p.stderr,
          "a start with a revoked DNNPRESS_ADMIN_TOKEN is refused: %d %r" % (p.returncode, p.stderr))
    ok("DNNPRESS_ADMIN_TOKEN: a new value revokes the old one across a restart, a revoked one is "
       "refused at start, the generated token stays")


def check_local_worker_token(tmp):
    """Restarts with --local-workers leave one live local agent token."""
    sup = os.path.join(tmp, "local-tok")
    os.makedirs(sup)
    fake = os.path.join(sup, "fake-worker.sh")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\necho \"$DNNPRESS_TOKEN\" >> %s/tokens\nexec sleep 60\n" % sup)
    os.chmod(fake, 0o755)
    seen = []
    port = free_port()
    for i in range(4):
        s = Server(os.path.join(sup, "data"), ["--local-workers", "1", "--worker-bin", fake],
                   port=port)
        deadline = time.time() + 5
        while time.time() < deadline:
            if os.path.exists(os.path.join(sup, "tokens")):
                with open(os.path.join(sup, "tokens")) as f:
                    toks = f.read().split()
                if len(toks) == i + 1:
                    break
            time.sleep(0.05)
        check(len(toks) == i + 1, "start %d: the worker got a token: %r" % (i, toks))
        seen = toks
        expect(s.req("GET", "/api/v1/me", token=seen[-1]), 200, "the current local token")
        for t in seen[:-1]:
            expect(s.req("GET", "/api/v1/me", token=t), 401, "an earlier start's local token",
                   contains="token revoked")
        if i < 3:
            s.stop()
    items = expect(s.req("GET", "/api/v1/tokens?limit=200", token=ADMIN), 200, "list")["items"]
    live = [t for t in items if t["scope"] == "agent" and not t["revoked_at"]]
    check(len(live) == 1 and live[0]["origin"] == "local",
          "one live local agent token after 4 starts: %r" % live)
    s.stop()
    ok("--local-workers: 4 starts leave one live local agent token; earlier ones answer 401")


WORKER = os.path.join(BUILD, "dnnpress-worker")


def proc_alive(pid):
    """Whether pid runs (a zombie, which an init that does not reap leaves, has exited)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def child_pids(pid):
    """Live processes whose parent is pid (a server's local workers)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def wait_until(pred, timeout, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def n_workers(s):
    return len(expect(s.req("GET", "/api/v1/workers?limit=200", token=ADMIN), 200,
                      "list workers")["items"])


def start_worker(url, token, cache_dir, log_path, extra=(), env_extra=None):
    """A `dnnpress-worker serve` of its own (not a local worker)."""
    env = dict(os.environ, DNNPRESS_TOKEN=token, **(env_extra or {}))
    log = open(log_path, "ab")
    return subprocess.Popen([WORKER, "serve", "--server", url, "--cache-dir", cache_dir,
                             "--wait-s", "2"] + list(extra),
                            stdout=log, stderr=log, env=env)


def wait_epoch(s, job, token, timeout):
    """Follows the job's event stream until its first epoch event; whether one came."""
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=timeout)
    c.request("GET", "/api/v1/jobs/%s/events" % job, headers={"Authorization": "Bearer " + token})
    r = c.getresponse()
    try:
        for raw in r:
            if raw.decode().rstrip("\n") == "event: epoch":
                return True
    except OSError:
        pass
    finally:
        c.close()
    return False


def check_worker_token_refused(tmp):
    """A worker whose token is revoked exits, idle or in the middle of a task."""
    check(os.access(WORKER, os.X_OK), "%s is not built" % WORKER)
    base = os.path.join(tmp, "worker-revoked")
    os.makedirs(base)
    s = Server(os.path.join(base, "data"), ["--lease-s", "3"])
    url = "http://127.0.0.1:%d" % s.port
    team, tok = setup_team(s, "revoked")

    # -- idle: its claim is refused
    agent = expect(s.req("POST", "/api/v1/tokens", {"team_id": team, "scope": "agent"}, ADMIN),
                   201, "agent token")
    log = os.path.join(base, "idle-worker.log")
    w = start_worker(url, agent["token"], os.path.join(base, "cache-idle"), log)
    check(wait_until(lambda: n_workers(s) == 1, 20), "the idle worker registered")
    expect(s.req("DELETE", "/api/v1/tokens/%s" % agent["id"], token=ADMIN), 200, "revoke")
    try:
        w.wait(timeout=10)
    except subprocess.TimeoutExpired:
        w.kill()
        fail("an idle worker whose token was revoked still runs after 10 s (see %s)" % log)
    with open(log, errors="replace") as f:
        text = f.read()
    check("refuses this worker's token" in text, "the worker says why it exits: %s" % text[-600:])

    # -- busy: a long train task under way
    agent = expect(s.req("POST", "/api/v1/tokens", {"team_id": team, "scope": "agent"}, ADMIN),
                   201, "agent token")
    m = expect(s.req("POST", "/api/v1/models", {"name": "m", "arch": "lenet5"}, tok), 201, "model")
    d = expect(s.req("POST", "/api/v1/datasets", {"name": "d", "builtin": "fashion-mnist"}, tok),
               201, "dataset")
    job = expect(s.req("POST", "/api/v1/jobs", {"name": "long", "model_id": m["id"],
                                                "dataset_id": d["id"],
                                                "pretrain": {"epochs": 1000}, "spec": SPEC}, tok),
                 201, "a job with a long train task")["id"]
    log = os.path.join(base, "busy-worker.log")
    w = start_worker(url, agent["token"], os.path.join(base, "cache-busy"), log,
                     ["--threads", "1"], {"DNNPRESS_LIMIT_TRAIN": "512", "DNNPRESS_LIMIT_TEST": "64"})
    check(wait_epoch(s, job, tok, 120), "the worker trains (an epoch event; see %s)" % log)
    expect(s.req("DELETE", "/api/v1/tokens/%s" % agent["id"], token=ADMIN), 200, "revoke")
    t0 = time.time()
    try:
        w.wait(timeout=15)
    except subprocess.TimeoutExpired:
        w.kill()
        fail("a worker whose token was revoked mid-task still runs after 15 s (see %s)" % log)
    with open(log, errors="replace") as f:
        text = f.read()
    check("refuses this worker's token" in text, "the busy worker says why: %s" % text[-600:])
    ok("a worker whose token is revoked exits: idle, and in a train task (%.1f s)"
       % (time.time() - t0))
    stop_clean(s)


def check_local_worker_lifetime(tmp):
    """Local workers live no longer than their server, and no two workers
    share a cache directory (real dnnpress-worker processes)."""
    check(os.access(WORKER, os.X_OK), "%s is not built" % WORKER)
    base = os.path.join(tmp, "lifetime")
    os.makedirs(base)
    data = os.path.join(base, "data")
    port = free_port()
    s = Server(data, ["--local-workers", "2", "--lease-s", "3"], port=port)
    check(wait_until(lambda: n_workers(s) == 2, 20), "2 local workers registered")
    old = child_pids(s.proc.pid)
    check(len(old) == 2, "2 local worker processes: %r" % old)

    # -- kill -9 of the server: its idle workers exit
    s.proc.kill()
    s.proc.wait()
    s.log.close()
    t0 = time.time()
    gone = wait_until(lambda: not any(proc_alive(p) for p in old), 5)
    for p in old:
        if proc_alive(p):
            os.kill(p, signal.SIGKILL)
    check(gone, "the local workers %r of a server killed with kill -9 still run after 5 s" % old)
    ok("kill -9 of the server: its 2 idle local workers exited in %.2f s" % (time.time() - t0))

    # -- the restarted server's workers take cache/w0 and w1
    log_at = os.path.getsize(s.log.name)  # the same log file: read what the new server adds
    s = Server(data, ["--local-workers", "2", "--lease-s", "3"], port=port)
    check(wait_until(lambda: n_workers(s) == 4, 20), "2 new local workers registered")
    new = child_pids(s.proc.pid)
    check(len(new) == 2, "2 new local worker processes: %r" % new)
    with open(s.log.name, errors="replace") as f:
        f.seek(log_at)
        text = f.read()
    check("in use by" not in text and "exited" not in text,
          "the new workers start on cache/w0 and w1 at once: %s" % text[-1500:])

    # -- a second worker on a cache directory in use refuses to start
    shared = expect(s.req("POST", "/api/v1/tokens", {"team_id": None, "scope": "agent"}, ADMIN),
                    201, "shared agent token")["token"]
    p = subprocess.run([WORKER, "serve", "--server", "http://127.0.0.1:%d" % port, "--cache-dir",
                        os.path.join(data, "cache", "w0")], capture_output=True, text=True,
                       env=dict(os.environ, DNNPRESS_TOKEN=shared), timeout=30)
    check(p.returncode == 1 and "in use by" in p.stderr and "w0" in p.stderr,
          "a second worker on cache/w0 refuses to start: %d %r" % (p.returncode, p.stderr))
    check(n_workers(s) == 4, "the refused worker did not register")
    ok("restart: new local workers on cache/w0 and w1; a second worker on cache/w0 refuses: %s"
       % p.stderr.strip().splitlines()[-1])

    # -- SIGTERM: no worker survives
    s.stop()
    check(s.proc.returncode == 0, "clean stop with local workers")
    check(wait_until(lambda: not any(proc_alive(p) for p in new), 2),
          "local workers survive the server's SIGTERM: %r" % [p for p in new if proc_alive(p)])
    ok("SIGTERM of the server: both local workers exited with it")


def raw_request(port, method, path, token=None, body=None, timeout=10):
    """Opens a socket and sends one request (headers and body); returns the socket."""
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    data = json.dumps(body).encode() if body is not None else b""
    head = "%s %s HTTP/1.1\r\nHost: x\r\n" % (method, path)
    if token:
        head += "Authorization: Bearer %s\r\n" % token
    if body is not None:
        head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
    c.sendall(head.encode() + b"\r\n" + data)
    return c


def read_all(c, limit=1 << 20):
    """Reads until the peer closes or the socket times out; returns the bytes."""
    out = b""
    try:
        while len(out) < limit:
            b = c.recv(65536)
            if not b:
                break
            out += b
    except OSError:
        pass
    return out


def wal_size(data):
    p = os.path.join(data, "dnnpress.db-wal")
    return os.path.getsize(p) if os.path.exists(p) else 0


def check_small_edges(s, tok):
    """What a user sees at the edges of the HTTP layer."""
    expect(s.req("POST", "/api/v1/teams", {"name": "x"}, tok), 403, "team token on an admin route",
           contains="needs an admin token")
    for scheme in ("bearer", "BEARER", "Bearer  "):
        expect(s.req("GET", "/api/v1/me", headers={"Authorization": "%s %s" % (scheme, tok)}), 200,
               "the Bearer scheme in any case (RFC 7235): %r" % scheme)
    expect(s.req("GET", "/api/v1/me", headers={"Authorization": "Basic " + tok}), 401,
           "another scheme", "unauthorized")
    for ct in ("application/jsonfoo", "application/json-seq", "text/plain"):
        expect(s.req("POST", "/api/v1/teams", {"name": "ct"}, ADMIN, headers={"Content-Type": ct}),
               415, "Content-Type %s" % ct, "unsupported_media_type")
    for i, ct in enumerate(("application/json; charset=utf-8", "Application/JSON",
                            "application/json ;charset=UTF-8")):
        expect(s.req("POST", "/api/v1/teams", {"name": "ct-%d" % i}, ADMIN,
                     headers={"Content-Type": ct}), 201, "Content-Type %s" % ct)
    # A malformed Content-Length is answered by libmicrohttpd itself, before
    # the server sees the request (docs/api.md says exactly what comes back).
    c = raw_request(s.port, "GET", "/healthz")
    c.close()
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    c.sendall(b"POST /api/v1/teams HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n{}")
    got = read_all(c)
    c.close()
    check(got.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in got,
          "a malformed Content-Length: %r" % got[:300])
    expect(s.req("GET", "/healthz"), 200, "still serving after a malformed Content-Length")
    st, body, _ = s.req("GET", "/metrics", token=ADMIN)
    check(st == 200 and b"# TYPE dnnpress_sqlite_wal_bytes gauge\ndnnpress_sqlite_wal_bytes " in body,
          "/metrics shows the WAL size as a gauge")
    ok("edges: 'an admin token', Bearer in any case, exact media type with parameters, "
       "malformed Content-Length 400 and close")


def is_closed(c, wait=0.01):
    """True when the peer closed c (EOF or reset); False while it is open."""
    c.settimeout(wait)
    try:
        return c.recv(4096) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


def check_connection_limits(tmp):
    """A flood of idle connections that trickle request-head bytes, from
    many loopback addresses, must not take the API down: /healthz answers
    at once throughout; one address gets no more than its cap; trickling
    does not extend the head deadline. A chunked body over the limit is not
    read on, and a stalled body does not hold its socket and temp file."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, 8192):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    data = os.path.join(tmp, "conns")
    s = Server(data, ["--http-per-ip-conns", "50", "--http-header-timeout-s", "2",
                      "--http-max-pending-conns", "200", "--http-body-timeout-s", "1",
                      "--max-upload-mb", "2"])
    # One address gets its cap (50) and no more.
    one = []
    for _ in range(60):
        c = socket.socket()
        c.bind(("127.0.2.1", 0))
        try:
            c.connect(("127.0.0.1", s.port))
        except OSError:
            pass
        one.append(c)
    time.sleep(0.3)
    n_one = sum(1 for c in one if not is_closed(c))
    for c in one:
        c.close()
    check(n_one == 50, "60 connections from one address: %d kept (the cap is 50)" % n_one)
    t_open = time.time()
    socks = []
    for i in range(2000):  # 40 addresses x 50: each at its cap
        c = socket.socket()
        c.settimeout(2)
        c.bind(("127.0.1.%d" % (1 + i % 40), 0))
        try:
            c.connect(("127.0.0.1", s.port))
            c.send(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        except OSError:
            pass
        socks.append(c)
    worst = 0.0
    for _ in range(5):
        t0 = time.time()
        try:
            st = s.req("GET", "/healthz", timeout=5)[0]
        except OSError as e:
            st = repr(e)
        dt = time.time() - t0
        check(st == 200, "/healthz during a flood of 2,000 idle connections: %r after %.2f s"
              % (st, dt))
        worst = max(worst, dt)
        for c in socks:  # a byte each, as a trickling client does
            try:
                c.send(b"a")
            except OSError:
                pass
        time.sleep(0.2)
    check(worst < 1.0, "/healthz took %.2f s during the flood" % worst)
    # Trickling does not move the head deadline: all gone 2 s (+ a tick) after opening.
    while time.time() - t_open < 3.0:
        for c in socks:
            try:
                c.send(b"a")
            except OSError:
                pass
        time.sleep(0.3)
    time.sleep(0.5)
    n_open = sum(1 for c in socks if not is_closed(c))
    for c in socks:
        c.close()
    check(n_open == 0, "%d of 2,000 trickling connections still open past the 2 s head deadline"
          % n_open)
    ok("per-address cap: 50 of 60 kept; 2,000 idle trickling connections from 40 addresses: "
       "/healthz in %.3f s at worst, all closed at the head deadline" % worst)

    # A chunked upload over the limit (2 MB) is not read on: the client
    # cannot push 100 MB, and the answer (when it can be read) is a JSON 413.
    team, tok = setup_team(s, "conns")
    c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    c.sendall(b"POST /api/v1/models?name=big&format=onnx HTTP/1.1\r\nHost: x\r\n"
              b"Authorization: Bearer " + tok.encode() + b"\r\nContent-Type: application/octet-stream"
              b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % 65536 + b"\0" * 65536 + b"\r\n"
    sent = 0
    try:
        while sent < (100 << 20):
            c.sendall(chunk)
            sent += 65536
    except OSError:
        pass
    got = read_all(c)
    c.close()
    check(sent < (40 << 20), "a chunked upload over the 2 MB limit: the server read on (%d MB sent)"
          % (sent >> 20))
    check(got == b"" or (got.startswith(b"HTTP/1.1 413") and b"too_large" in got),
          "the answer to an oversize chunked upload: %r" % got[:300])
    # A stalled upload: closed after the body timeout (1 s), its temp file gone.
    c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    c.sendall(b"POST /api/v1/models?name=stall&format=onnx HTTP/1.1\r\nHost: x\r\n"
              b"Authorization: Bearer " + tok.encode() + b"\r\nContent-Type: application/octet-stream"
              b"\r\nContent-Length: 1000000\r\n\r\n" + b"\0" * 10000)
    t0 = time.time()
    closed = is_closed(c, 5)
    dt = time.time() - t0
    c.close()
    check(closed and dt < 4, "a stalled upload body: closed %s after %.1f s" % (closed, dt))
    time.sleep(0.2)
    left = os.listdir(os.path.join(data, "tmp"))
    check(not left, "temp files left by a dropped upload: %r" % left)
    s.stop()
    ok("bodies: a chunked upload is cut at the limit after %d MB sent (%s), a stalled body is "
       "closed after %.1f s with its temp file removed"
       % (sent >> 20, "413 read" if got else "reset before the answer", dt))


def check_shutdown(tmp):
    """SIGTERM with parked long-poll claims and open event streams: every
    parked request is answered (204, end of stream), the process exits 0
    within a bounded time, and the store is closed (integrity, WAL merged)."""
    data = os.path.join(tmp, "shutdown")
    s = Server(data)
    team, tok = setup_team(s, "shutdown")
    agent = expect(s.req("POST", "/api/v1/tokens", {"team_id": team, "scope": "agent"}, ADMIN),
                   201, "agent token")["token"]
    m = expect(s.req("POST", "/api/v1/models", {"name": "m", "arch": "lenet5"}, tok), 201, "model")
    d = expect(s.req("POST", "/api/v1/datasets", {"name": "d", "builtin": "fashion-mnist"}, tok),
               201, "dataset")
    job = expect(submit(s, tok, m["id"], d["id"]), 201, "submit")
    w = expect(s.req("POST", "/agent/v1/register", {"name": "w", "version": "e2e",
                                                    "capabilities": ["export"], "device": {}},
                     agent), 201, "register")
    for n in (1, 2, 4, 20):
        if n > 1:
            s = Server(data, port=s.port)
        # An export-only worker finds nothing ready: its claims park.
        claims = [raw_request(s.port, "POST", "/agent/v1/claim", agent,
                              {"worker_id": w["worker_id"], "capabilities": ["export"],
                               "wait_s": 30}) for _ in range(n)]
        streams = [raw_request(s.port, "GET", "/api/v1/jobs/%s/events" % job["id"], tok)
                   for _ in range(2)]
        time.sleep(0.5)
        t0 = time.time()
        s.proc.send_signal(signal.SIGTERM)
        try:
            s.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            fail("SIGTERM with %d parked claims: still running after 10 s" % n)
        dt = time.time() - t0
        s.log.close()
        check(s.proc.returncode == 0, "SIGTERM with %d parked claims and 2 event streams: exit "
              "status %d (see %s)" % (n, s.proc.returncode, s.log.name))
        check(dt < 5, "SIGTERM with %d parked claims took %.1f s" % (n, dt))
        for c in claims:
            got = read_all(c)
            c.close()
            check(got.startswith(b"HTTP/1.1 204"), "a parked claim at shutdown: %r" % got[:200])
        for c in streams:
            got = read_all(c)
            c.close()
            check(got.startswith(b"HTTP/1.1 200") and got.endswith(b"0\r\n\r\n"),
                  "an event stream at shutdown ends with the last chunk: %r" % got[-200:])
        # Before any other connection opens it (closing one merges the WAL too).
        check(wal_size(data) == 0, "the store was closed (WAL merged): %d bytes" % wal_size(data))
        con = sqlite3.connect(os.path.join(data, "dnnpress.db"))
        check(con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check")
        con.close()
        ok("SIGTERM with %d parked claims and 2 event streams: exit 0 in %.2f s, claims 204, "
           "streams ended, store closed" % (n, dt))


def main():
    check(os.access(SERVER, os.X_OK), "%s is not built" % SERVER)
    tmp = tempfile.mkdtemp(prefix="dp-e2e-server-")
    keep = os.environ.get("KEEP_TMP")
    if not keep:
        import atexit
        atexit.register(lambda: subprocess.run(["rm", "-rf", tmp]))
    only = sys.argv[2:]  # names of check_* functions: run just those
    if only:
        for name in only:
            globals()["check_" + name](tmp)
        print("server_api: selected checks passed", flush=True)
        return
    data = os.path.join(tmp, "data")
    check_openapi()
    check_shutdown(tmp)
    check_connection_limits(tmp)
    s = Server(data, ["--lease-s", "2", "--backoff-ms", "50", "--max-upload-mb", "2"])

    # -- auth and teams
    expect(s.req("GET", "/api/v1/jobs"), 401, "no token", "unauthorized")
    expect(s.req("GET", "/api/v1/jobs", token="dpt_nope"), 401, "bad token", "unauthorized")
    team_a, tok_a = setup_team(s, "team-a")
    team_b, tok_b = setup_team(s, "team-b")
    expect(s.req("POST", "/api/v1/teams", {"name": "team-a"}, ADMIN), 409, "duplicate team")
    expect(s.req("POST", "/api/v1/teams", {"name": "x"}, tok_a), 403, "team token on admin route",
           "forbidden")
    agent = expect(s.req("POST", "/api/v1/tokens", {"team_id": team_a, "scope": "agent"}, ADMIN),
                   201, "agent token")["token"]
    me = expect(s.req("GET", "/api/v1/me", token=tok_a), 200, "me")
    check(me["scope"] == "team" and me["team_id"] == team_a, "me: %r" % me)
    ok("auth: 401 without/bad token, 403 wrong scope, teams and tokens")
    check_small_edges(s, tok_a)

    # -- models and datasets
    m = expect(s.req("POST", "/api/v1/models", {"name": "lenet", "arch": "lenet5"}, tok_a), 201,
               "builtin model")
    d = expect(s.req("POST", "/api/v1/datasets", {"name": "fm", "builtin": "fashion-mnist"},
                     tok_a), 201, "builtin dataset")
    om = expect(s.req("POST", "/api/v1/models?name=tiny&format=onnx", raw=onnx_bytes(),
                      token=tok_a), 201, "onnx upload")
    check(om["format"] == "onnx" and len(om["sha256"]) == 64 and om["size"] == len(onnx_bytes()),
          "onnx model object %r" % om)
    st, body, hdrs = s.req("GET", "/api/v1/models/%s/content" % om["id"], token=tok_a)
    check(st == 200 and body == onnx_bytes() and hdrs.get("ETag") == '"%s"' % om["sha256"],
          "model content download / ETag")
    st, _, _ = s.req("GET", "/api/v1/models/%s/content" % om["id"], token=tok_a,
                     headers={"If-None-Match": '"%s"' % om["sha256"]})
    check(st == 304, "If-None-Match gives 304, got %d" % st)
    dsi = expect(s.req("POST", "/api/v1/datasets?name=tiny-idx&format=idx", raw=idx_tar(),
                       token=tok_a), 201, "idx tar upload")
    check(dsi["format"] == "idx", "dataset %r" % dsi)
    # A real dnnpress checkpoint (the worker's own trainer, a few steps).
    ckpt = os.path.join(tmp, "lenet300.safetensors")
    subprocess.run([os.path.join(BUILD, "dnnpress-worker"), "train", "--model", "lenet-300-100",
                    "--data", "idx:/usr/share/datasets/fashion-mnist", "--epochs", "1",
                    "--limit-train", "128", "--limit-test", "64", "--threads", "1", "--quiet",
                    "--out", ckpt], check=True, stdout=subprocess.DEVNULL)
    with open(ckpt, "rb") as f:
        st_bytes = f.read()
    sm = expect(s.req("POST", "/api/v1/models?name=lenet300&format=safetensors", raw=st_bytes,
                      token=tok_a), 201, "safetensors checkpoint upload")
    check(sm["format"] == "safetensors" and sm["size"] == len(st_bytes), "model %r" % sm)
    expect(s.req("POST", "/api/v1/models?name=cut&format=safetensors", raw=st_bytes[:len(st_bytes) // 2],
                 token=tok_a), 400, "truncated safetensors", contains="safetensors")
    cif = tar_of([("data_batch_%d.bin" % i, bytes([i]) + bytes(3072)) for i in range(1, 6)] +
                 [("test_batch.bin", bytes([9]) + bytes(3072))])
    expect(s.req("POST", "/api/v1/datasets?name=tiny-cifar&format=cifar10", raw=cif, token=tok_a),
           201, "cifar10 tar upload")
    npy = tar_of([("x_train.npy", npy_of("<f4", (3, 1, 2), 4)), ("y_train.npy", npy_of("|u1", (3,), 1)),
                  ("x_test.npy", npy_of("<f4", (2, 1, 2), 4)), ("y_test.npy", npy_of("|u1", (2,), 1))])
    expect(s.req("POST", "/api/v1/datasets?name=tiny-npy&format=npy", raw=npy, token=tok_a), 201,
           "npy tar upload")
    # The same reader as the worker's (common/dataset.c): pax headers and a
    # gzip-compressed tar are accepted, and checked member by member.
    npy_members = [("x_train.npy", npy_of("<f4", (3, 1, 2), 4)), ("y_train.npy", npy_of("|u1", (3,), 1)),
                   ("x_test.npy", npy_of("<f4", (2, 1, 2), 4)), ("y_test.npy", npy_of("|u1", (2,), 1))]
    expect(s.req("POST", "/api/v1/datasets?name=npy-pax-gz&format=npy",
                 raw=tar_of(npy_members, mode="w:gz", fmt=tarfile.PAX_FORMAT), token=tok_a), 201,
           "npy pax tar.gz upload")
    expect(s.req("POST", "/api/v1/datasets?name=npy-gz-bad&format=npy",
                 raw=tar_of(npy_members[:3] + [("y_test.npy", npy_of("|u1", (3,), 1))], mode="w:gz"),
                 token=tok_a), 400, "tar.gz with a bad member", contains="samples but its labels")
    # The server reads NPY headers with the worker's reader (common/npy.c):
    # a shape whose size overflows 64 bits is not "no data", and an array
    # the engine cannot load as images is refused at upload, not in a task.
    huge = 1 << 32
    expect(s.req("POST", "/api/v1/datasets?name=npy-huge&format=npy",
                 raw=tar_of([("x_train.npy", npy_of("<f4", (huge, huge), 4, data_len=0)),
                             ("y_train.npy", npy_of("|u1", (huge, huge), 1, data_len=0))] +
                            npy_members[2:]), token=tok_a),
           400, "npy shape (2^32, 2^32) without data", contains="x_train.npy: shape (4294967296, 4294967296)")
    expect(s.req("POST", "/api/v1/datasets?name=npy-2d&format=npy",
                 raw=tar_of([("x_train.npy", npy_of("<f4", (3, 2), 4))] + npy_members[1:]),
                 token=tok_a),
           400, "npy images of 2 dimensions", contains="x_train.npy: image shape (3, 2)")
    expect(s.req("POST", "/api/v1/datasets?name=npy-long&format=npy",
                 raw=tar_of(npy_members[:1] + [("y_train.npy", npy_of("|u1", (3,), 1, data_len=4))] +
                            npy_members[2:]), token=tok_a),
           400, "npy member with a byte too many", contains="y_train.npy: shape (3,) of '|u1' needs 3 data bytes, the file has 4")
    bad_cif = tar_of([("data_batch_%d.bin" % i, bytes([12]) + bytes(3072)) for i in range(1, 6)] +
                     [("test_batch.bin", bytes(3073))])
    expect(s.req("POST", "/api/v1/datasets?name=bad-cifar&format=cifar10", raw=bad_cif, token=tok_a),
           400, "cifar10 label out of range", contains="label 12")
    # An uploaded model needs no pretrain: the job starts at compress, on that file.
    jo = expect(s.req("POST", "/api/v1/jobs", {"model_id": om["id"], "dataset_id": dsi["id"],
                                               "spec": SPEC}, tok_a), 201, "job on an uploaded model")
    check([t["type"] for t in jo["tasks"]] == ["compress", "retrain", "export"],
          "no train task without pretrain: %r" % jo["tasks"])
    expect(s.req("POST", "/api/v1/jobs/%s/cancel" % jo["id"], token=tok_a), 202, "cancel")
    # With a compile field the chain ends with compile, its defaults stored.
    jc = expect(s.req("POST", "/api/v1/jobs", {"model_id": om["id"], "dataset_id": dsi["id"],
                                               "spec": SPEC, "compile": {}}, tok_a), 201,
                "job with compile")
    check([t["type"] for t in jc["tasks"]] == ["compress", "retrain", "export", "compile"],
          "compile follows export: %r" % jc["tasks"])
    expect(s.req("POST", "/api/v1/jobs/%s/cancel" % jc["id"], token=tok_a), 202, "cancel")
    jo = expect(s.req("POST", "/api/v1/jobs", {"model_id": om["id"], "dataset_id": dsi["id"],
                                               "spec": SPEC, "compile": {"target": "opencl"}},
                      tok_a), 201, "job compiling for the opencl target")
    expect(s.req("POST", "/api/v1/jobs/%s/cancel" % jo["id"], token=tok_a), 202, "cancel")
    expect(s.req("GET", "/api/v1/models/%s" % om["id"], token=tok_b), 404, "team B reads A's model")
    ok("models and datasets: built-ins, ONNX, safetensors, IDX, CIFAR-10 and NPY uploads stored by sha256, "
       "ETag/304; a job on an uploaded model skips train")

    # -- bad input: each a 4xx naming the problem
    expect(s.req("POST", "/api/v1/jobs", b"{\"name\": ", tok_a), 400, "malformed JSON",
           "malformed_json", "malformed JSON")
    expect(s.req("POST", "/api/v1/jobs", b"[1,2]", tok_a), 400, "non-object JSON", "malformed_json")
    expect(s.req("POST", "/api/v1/jobs", {"name": 5, "model_id": m["id"]}, tok_a), 400,
           "wrong type", contains="name")
    expect(s.req("POST", "/api/v1/jobs", {"model_id": m["id"], "dataset_id": d["id"], "spec": SPEC,
                                          "pretrain": {"epochs": 1}, "colour": "red"}, tok_a),
           400, "unknown field", contains="colour")
    expect(s.req("POST", "/api/v1/jobs", {"model_id": m["id"], "dataset_id": d["id"],
                                          "spec": dict(SPEC, metod="admm"),
                                          "pretrain": {"epochs": 1}}, tok_a),
           422, "bad spec field", "invalid_spec", "metod")
    expect(s.req("POST", "/api/v1/jobs", {"model_id": m["id"], "dataset_id": d["id"], "spec": SPEC},
                 tok_a), 422, "builtin model without pretrain", contains="pretrain")
    expect(s.req("POST", "/api/v1/jobs", {"model_id": "mdl_x", "dataset_id": d["id"], "spec": SPEC,
                                          "pretrain": {"epochs": 1}}, tok_a),
           422, "unknown model", contains="model_id")
    expect(s.req("POST", "/api/v1/jobs", {"model_id": m["id"], "dataset_id": d["id"], "spec": SPEC,
                                          "pretrain": {"epochs": 0}}, tok_a),
           400, "pretrain.epochs out of range", contains="pretrain.epochs")
    for bad, field in (({"target": "gpu"}, "body.compile.target"),
                       ({"target": 1}, "body.compile.target"),
                       ({"tune_s": 3601}, "body.compile.tune_s"),
                       ({"tune_s": -1}, "body.compile.tune_s"),
                       ({"tune_s": 1.5}, "body.compile.tune_s"),
                       ({"target": "opencl", "tune_s": 5}, "body.compile.tune_s"),
                       ({"target": "native", "threads": 4}, "threads"),
                       ("portable", "body.compile")):
        expect(s.req("POST", "/api/v1/jobs", {"model_id": m["id"], "dataset_id": d["id"],
                                              "spec": SPEC, "pretrain": {"epochs": 1},
                                              "compile": bad}, tok_a),
               400, "bad compile field %r" % (bad,), "invalid_request", field)
    # export.normalization (issue 17): a boolean, default true.
    expect(s.req("POST", "/api/v1/jobs", {"model_id": m["id"], "dataset_id": d["id"], "spec": SPEC,
                                          "pretrain": {"epochs": 1},
                                          "export": {"normalization": "no"}}, tok_a),
           400, "bad export.normalization", "invalid_request", "body.export.normalization")
    jn = expect(s.req("POST", "/api/v1/jobs", {"model_id": om["id"], "dataset_id": dsi["id"],
                                               "spec": SPEC, "export": {"normalization": False}},
                      tok_a), 201, "job whose export leaves the normalisation out")
    expect(s.req("POST", "/api/v1/jobs/%s/cancel" % jn["id"], token=tok_a), 202, "cancel")
    expect(s.req("POST", "/api/v1/jobs", b"{}", tok_a, headers={"Content-Type": "text/plain"}),
           415, "wrong content type")
    st, head = s.req_expect("POST", "/api/v1/jobs", 2 << 20, tok_a, "application/json")
    check(st == 413 and "too_large" in head, "oversize JSON body (Content-Length): %s" % head)
    st, head = s.req_expect("POST", "/api/v1/models?name=big&format=onnx", 3 << 20, tok_a,
                            "application/octet-stream")
    check(st == 413 and "over the limit" in head, "oversize upload (Content-Length): %s" % head)
    # Over the limit the server stops reading a chunked body: it answers a
    # JSON 413, or the close is a reset when the client still had bytes in
    # flight (docs/security.md, "Limits"); never a 2xx.
    for what, path, chunks, ctype in (
            ("oversize chunked JSON body", "/api/v1/jobs", [b"{\"name\": \"" + b"x" * 65536] * 32,
             "application/json"),
            ("oversize chunked upload", "/api/v1/models?name=big&format=onnx",
             [b"\0" * 65536] * 48, "application/octet-stream")):
        st, doc, _ = s.req_chunked("POST", path, chunks, tok_a, ctype)
        check(st is None or (st == 413 and doc.get("code") == "too_large"),
              "%s: %r %r" % (what, st, doc))
    expect(s.req("POST", "/api/v1/teams", {"name": "../../etc/passwd"}, ADMIN), 400,
           "path-like team name", contains="path")
    for bad in ("a\x1b[2Jb", "c1\x9bx", "rtl\u202eexe.txt", "iso\u2066x"):
        expect(s.req("POST", "/api/v1/teams", {"name": bad}, ADMIN), 400,
               "control characters in a team name %r" % bad, contains="control characters")
        expect(s.req("POST", "/api/v1/jobs", {"name": bad, "model_id": m["id"], "dataset_id": d["id"],
                                              "spec": SPEC, "pretrain": {"epochs": 1}}, tok_a), 400,
               "control characters in a job name %r" % bad, contains="control characters")
    # (a small body: the name is refused before the body is read, and a large
    # one would still be in flight when the server closes the connection)
    expect(s.req("POST", "/api/v1/models?name=..%2Fx&format=onnx", raw=b"\x08\x08", token=tok_a),
           400, "path-like model name", contains="path")
    expect(s.req("POST", "/api/v1/models?name=junk&format=onnx", raw=b"\xff" * 64, token=tok_a), 400,
           "garbage ONNX", contains="onnx upload")
    # Well framed but not a graph the engine can run: the importer's reason.
    expect(s.req("POST", "/api/v1/models?name=empty&format=onnx", raw=b"\x08\x08\x3a\x03\x12\x01g",
                 token=tok_a), 400, "ONNX without a runnable graph", contains="onnx model upload")
    expect(s.req("POST", "/api/v1/models?name=junk&format=safetensors", raw=b"\x10" + b"\0" * 20,
                 token=tok_a), 400, "garbage safetensors", contains="safetensors")
    expect(s.req("POST", "/api/v1/models?name=x&format=tflite", raw=b"abc", token=tok_a), 400,
           "unknown upload format", contains="format")
    expect(s.req("POST", "/api/v1/datasets?name=evil&format=idx",
                 raw=tar_of([("../train-images-idx3-ubyte", idx_images(1))]), token=tok_a), 400,
           "tar member with ..", contains="plain file name")
    expect(s.req("POST", "/api/v1/datasets?name=short&format=idx", raw=idx_tar()[:1500],
                 token=tok_a), 400, "truncated tar")
    expect(s.req("POST", "/api/v1/datasets?name=mism&format=idx", raw=idx_tar(label_n=9),
                 token=tok_a), 400, "labels/images mismatch", contains="labels")
    expect(s.req("POST", "/api/v1/datasets?name=miss&format=idx",
                 raw=tar_of([("train-images-idx3-ubyte", idx_images(2))]), token=tok_a), 400,
           "missing members", contains="missing")
    # Names shown clipped in messages, at the lengths around each message
    # buffer (the clip wrote one byte past a buffer of exactly that size; the
    # ASan build aborted, before authentication for the route).
    for n in (62, 63, 64, 65, 95, 96, 97, 200):
        expect(s.req("GET", "/" + "p" * (n - 1)), 404, "no route, %d-byte path" % n, "not_found")
        expect(s.req("POST", "/api/v1/jobs", {"model_id": m["id"], "k" * n: 1}, tok_a), 400,
               "unknown %d-byte field" % n, contains="unknown field")
        if n > 100:  # a ustar name field holds 100 bytes
            continue
        expect(s.req("POST", "/api/v1/datasets?name=clip%d&format=idx" % n,
                     raw=tar_of([("d/" + "t" * (n - 2), idx_images(1))]), token=tok_a), 400,
               "%d-byte tar member name with a '/'" % n, contains="plain file name")
    # Found by tests/fuzz/fuzz_http.c: a message quoting bytes that are not
    # UTF-8 (a path; the first before authentication) could not become JSON,
    # and the connection was dropped without an answer.
    for path in (b"/\xff", b"/api/v1/datasets/\xc3", b"/" + b"\xc3\xa9" * 60 + b"\xff"):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        c.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                  tok_a.encode() + b"\r\nConnection: close\r\n\r\n")
        ans = read_all(c)
        c.close()
        check(ans.startswith(b"HTTP/1.1 404") and b'"code":"not_found"' in ans,
              "non-UTF-8 path %r: 404 not_found as JSON, got %r" % (path, ans[:200]))
    expect(s.req("GET", "/api/v1/nothing", token=tok_a), 404, "unknown route", "not_found")
    expect(s.req("DELETE", "/api/v1/jobs", token=tok_a), 405, "wrong method", "method_not_allowed")
    expect(s.req("GET", "/api/v1/jobs?limit=500", token=tok_a), 400, "limit out of range",
           contains="limit")
    expect(s.req("GET", "/api/v1/artifacts/..%2F..%2Fdnnpress.db", token=tok_a), 404,
           "path-like artifact name", contains="no route")
    expect(s.req("GET", "/api/v1/artifacts/%2E%2E", token=tok_a), 400,
           "'..' as an artifact name", contains="sha256")
    expect(s.req("GET", "/healthz"), 200, "still serving after bad input")
    ok("bad input: malformed JSON, wrong types, unknown fields, bad spec, 413s, 415, "
       "path-like names, bad uploads -> 4xx naming the problem; still serving")

    # -- 200 submissions from 8 parallel clients
    errors = []

    def client(i):
        for k in range(25):
            st, doc, _ = submit(s, tok_a, m["id"], d["id"], name="p%d-%d" % (i, k))
            if st != 201:
                errors.append((st, doc))

    n0 = count_jobs(s, tok_a)
    t0 = time.time()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, "parallel submissions failed: %r" % errors[:3])
    n = count_jobs(s, tok_a) - n0
    check(n == 200, "expected exactly 200 new jobs, found %d" % n)
    ok("200 submissions from 8 parallel clients -> exactly 200 jobs (%.1f s)" % (time.time() - t0))

    # -- Idempotency-Key
    st1, j1, _ = submit(s, tok_a, m["id"], d["id"], key="key-1")
    st2, j2, _ = submit(s, tok_a, m["id"], d["id"], key="key-1")
    check(st1 == 201 and st2 == 200 and j1["id"] == j2["id"],
          "idempotent replay: %d %d %s %s" % (st1, st2, j1.get("id"), j2.get("id")))
    check(count_jobs(s, tok_a) == n0 + 201, "the replay created a job")
    expect(submit(s, tok_a, m["id"], d["id"], key="key-1", name="other"), 409,
           "same key, different request", contains="Idempotency-Key")
    # The same key from 8 clients at once: one job, one 201.
    res = []
    par = [threading.Thread(target=lambda: res.append(submit(s, tok_a, m["id"], d["id"], key="key-par")))
           for _ in range(8)]
    for t in par:
        t.start()
    for t in par:
        t.join()
    check(sorted(r[0] for r in res) == [200] * 7 + [201] and len({r[1]["id"] for r in res}) == 1,
          "parallel replays: %r" % [(r[0], r[1].get("id")) for r in res])
    check(count_jobs(s, tok_a) == n0 + 202, "parallel replays created jobs")
    # The same key from another team is another key.
    mb = expect(s.req("POST", "/api/v1/models", {"name": "lenet", "arch": "lenet5"}, tok_b), 201, "B model")
    db = expect(s.req("POST", "/api/v1/datasets", {"name": "fm", "builtin": "fashion-mnist"}, tok_b), 201, "B ds")
    jb = expect(submit(s, tok_b, mb["id"], db["id"], key="key-1"), 201, "B uses the same key")
    # Printable ASCII, as docs/api.md says, includes the space.
    js = expect(submit(s, tok_b, mb["id"], db["id"], key="key with space"), 201, "a key with a space")
    check(submit(s, tok_b, mb["id"], db["id"], key="key with space")[1]["id"] == js["id"],
          "a key with a space replays")
    expect(submit(s, tok_b, mb["id"], db["id"], key="tab\tkey"), 400, "a key with a tab",
           contains="Idempotency-Key")
    expect(s.req("POST", "/api/v1/jobs/%s/cancel" % js["id"], token=tok_b), 202, "cancel")
    ok("Idempotency-Key: the same key twice -> one job (201 then 200), 8 clients at once -> one job; "
       "reuse with another body -> 409")

    # -- team isolation
    expect(s.req("GET", "/api/v1/jobs/%s" % j1["id"], token=tok_b), 404, "B reads A's job")
    expect(s.req("POST", "/api/v1/jobs/%s/cancel" % j1["id"], token=tok_b), 404, "B cancels A's job")
    expect(s.req("GET", "/api/v1/jobs/%s/events" % j1["id"], token=tok_b), 404, "B streams A's job")
    check(count_jobs(s, tok_b) == 2, "B sees only its own two jobs")
    expect(s.req("GET", "/api/v1/models/%s/content" % om["id"], token=tok_b), 404, "B downloads A's model")
    ok("team isolation: team B gets 404 for team A's job, events, model")

    # -- a whole job driven by a simulated worker, and a stale worker refused
    # Cancel every job but j1 and B's, so the queue holds only j1's tasks.
    doc = expect(s.req("GET", "/api/v1/jobs?limit=200", token=tok_a), 200, "list")
    cursor = None
    while True:
        for j in doc["items"]:
            if j["id"] != j1["id"]:
                expect(s.req("POST", "/api/v1/jobs/%s/cancel" % j["id"], token=tok_a), 202, "cancel")
        if not doc["next_cursor"]:
            break
        doc = expect(s.req("GET", "/api/v1/jobs?limit=200&cursor=" + doc["next_cursor"], token=tok_a), 200, "list")
    expect(s.req("POST", "/api/v1/jobs/%s/cancel" % jb["id"], token=tok_b), 202, "cancel B")
    again = expect(s.req("POST", "/api/v1/jobs/%s/cancel" % jb["id"], token=tok_b), 202, "cancel twice")
    check(again["state"] == "cancelled", "cancel is idempotent")

    expect(s.req("POST", "/agent/v1/register", {"name": "w1", "capabilities": ["train"]}, tok_a),
           403, "team token on agent route")
    expect(s.req("POST", "/agent/v1/register", {"name": "w1", "capabilities": ["dance"]}, agent),
           400, "bad capability", contains="capabilities")
    w = expect(s.req("POST", "/agent/v1/register", {"name": "w1", "version": "e2e",
                                                    "capabilities": ["train", "compress", "retrain", "export"],
                                                    "device": {"cpu": "test"}}, agent), 201, "register")
    caps = ["train", "compress", "retrain", "export"]
    ok_before = metric_2xx(s)
    t0 = time.time()
    st, _, _ = s.req("POST", "/agent/v1/claim", {"worker_id": w["worker_id"], "capabilities": ["export"],
                                                  "wait_s": 1}, agent)
    check(st == 204 and time.time() - t0 >= 0.9, "long-poll with nothing ready: 204 after wait_s")
    # The first /metrics read and the 204 are both answered since ok_before.
    check(metric_2xx(s) - ok_before >= 2, "/metrics counts the long-poll's 204 among 2xx replies")

    # Events: open a stream now, before the work starts.
    events = []
    stream_done = threading.Event()

    def follow(after=None):
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        h = {"Authorization": "Bearer " + tok_a}
        if after is not None:
            h["Last-Event-ID"] = str(after)
        c.request("GET", "/api/v1/jobs/%s/events" % j1["id"], headers=h)
        r = c.getresponse()
        check(r.status == 200 and r.getheader("Content-Type") == "text/event-stream", "SSE response")
        cur = {}
        out = []
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line == "":
                if cur:
                    out.append(cur)
                cur = {}
            elif line.startswith(":"):
                continue
            else:
                k, v = line.split(": ", 1)
                cur[k] = v
        c.close()
        return out

    def follower():
        events.extend(follow())
        stream_done.set()

    threading.Thread(target=follower, daemon=True).start()

    task = expect(s.req("POST", "/agent/v1/claim", {"worker_id": w["worker_id"], "capabilities": caps,
                                                    "wait_s": 5}, agent), 200, "claim")["task"]
    check(task["type"] == "train" and task["job_id"] == j1["id"] and task["attempt"] == 1,
          "first task is j1's train: %r" % task)
    check(task["inputs"]["model"] == {"arch": "lenet5"} and
          task["inputs"]["dataset"] == {"builtin": "fashion-mnist"} and
          task["params"]["pretrain"] == {"epochs": 1} and task["params"]["spec"] == SPEC,
          "task inputs/params: %r" % task)
    old_fence = task["fence"]
    # Lose the lease: no heartbeat for longer than --lease-s 2.
    time.sleep(2.6)
    t2 = expect(s.req("POST", "/agent/v1/claim", {"worker_id": w["worker_id"], "capabilities": caps,
                                                  "wait_s": 10}, agent), 200, "re-claim")["task"]
    check(t2["id"] == task["id"] and t2["fence"] > old_fence and t2["attempt"] == 2,
          "the expired task is leased again with a new fence: %r" % t2)
    expect(s.req("POST", "/agent/v1/tasks/%s/complete" % task["id"], {"fence": old_fence}, agent),
           409, "stale worker completing", "lease_lost")
    expect(s.req("POST", "/agent/v1/tasks/%s/heartbeat" % task["id"], {"fence": old_fence}, agent),
           409, "stale heartbeat", "lease_lost")
    expect(s.req("PUT", "/agent/v1/tasks/%s/artifacts/model?fence=%d" % (task["id"], old_fence),
                 raw=b"stale"), 401, "artifact without token")
    expect(s.req("PUT", "/agent/v1/tasks/%s/artifacts/model?fence=%d" % (task["id"], old_fence),
                 raw=b"stale", token=agent), 409, "stale artifact upload", "lease_lost")
    job = expect(s.req("GET", "/api/v1/jobs/%s" % j1["id"], token=tok_a), 200, "get job")
    errs = job["tasks"][0]["errors"]
    check(len(errs) == 1 and errs[0]["kind"] == "lease_expired" and errs[0]["attempt"] == 1,
          "per-attempt error history: %r" % errs)
    ok("stale worker: lease expired, task re-leased with fence %d > %d, old fence refused (409 lease_lost)"
       % (t2["fence"], old_fence))

    fence = t2["fence"]
    hb = expect(s.req("POST", "/agent/v1/tasks/%s/heartbeat" % t2["id"],
                      {"fence": fence, "progress": {"epoch": 1, "epochs": 1, "pct": 100.0}}, agent),
                200, "heartbeat")
    check(hb["cancel"] is False, "no cancel")
    expect(s.req("POST", "/agent/v1/tasks/%s/events" % t2["id"],
                 {"fence": fence, "events": [{"type": "epoch", "data": {"epoch": 1, "loss": 0.5}}]},
                 agent), 200, "events")
    expect(s.req("POST", "/agent/v1/tasks/%s/events" % t2["id"],
                 {"fence": fence, "events": [{"type": "state", "data": {}}]}, agent), 400,
           "worker may not forge state events", contains="type")
    ck = expect(s.req("PUT", "/agent/v1/tasks/%s/artifacts/checkpoint?fence=%d" % (t2["id"], fence),
                      raw=b"checkpoint-bytes", token=agent), 201, "checkpoint upload")
    mdl = expect(s.req("PUT", "/agent/v1/tasks/%s/artifacts/model?fence=%d" % (t2["id"], fence),
                       raw=b"trained-model", token=agent), 201, "model upload")
    expect(s.req("POST", "/agent/v1/tasks/%s/complete" % t2["id"],
                 {"fence": fence, "outputs": {"model": "0" * 64}}, agent), 400,
           "complete with an unknown artifact", contains="outputs.model")
    expect(s.req("POST", "/agent/v1/tasks/%s/complete" % t2["id"],
                 {"fence": fence, "outputs": {"model": mdl["sha256"]}}, agent), 200, "complete")
    # compress: its input model is train's output; then retrain gets the report.
    outputs = {}
    for ttype in ("compress", "retrain", "export"):
        t = expect(s.req("POST", "/agent/v1/claim", {"worker_id": w["worker_id"], "capabilities": caps,
                                                     "wait_s": 5}, agent), 200, "claim " + ttype)["task"]
        check(t["type"] == ttype, "expected %s, got %s" % (ttype, t["type"]))
        if ttype == "compress":
            check(t["inputs"]["model"]["sha256"] == mdl["sha256"], "compress reads train's model")
        if ttype == "retrain":
            check(t["inputs"]["report"]["sha256"] == outputs["report"], "retrain reads the report")
        blob = expect(s.req("GET", "/agent/v1/blobs/%s" % t["inputs"]["model"]["sha256"], token=agent),
                      200, "worker fetches its input")
        f = t["fence"]
        outs = {}
        for kind in (("model", "report") if ttype != "export" else ("onnx",)):
            content = ("%s of %s" % (kind, ttype)).encode()
            if kind == "report":
                content = json.dumps({"version": 1, "task": ttype}).encode()
            a = expect(s.req("PUT", "/agent/v1/tasks/%s/artifacts/%s?fence=%d" % (t["id"], kind, f),
                             raw=content, token=agent), 201, "upload " + kind)
            outs[kind] = a["sha256"]
        outputs.update(outs)
        expect(s.req("POST", "/agent/v1/tasks/%s/complete" % t["id"], {"fence": f, "outputs": outs},
                     agent), 200, "complete " + ttype)
    job = expect(s.req("GET", "/api/v1/jobs/%s" % j1["id"], token=tok_a), 200, "get job")
    check(job["state"] == "succeeded" and job["finished_at"] and
          job["outputs"]["onnx"] == outputs["onnx"] and job["outputs"]["report"] == outputs["report"],
          "job succeeded with outputs: %r" % job)
    rep = expect(s.req("GET", "/api/v1/jobs/%s/report" % j1["id"], token=tok_a), 200, "report")
    check(rep == {"version": 1, "task": "retrain"}, "report is retrain's: %r" % rep)
    arts = expect(s.req("GET", "/api/v1/jobs/%s/artifacts" % j1["id"], token=tok_a), 200, "artifacts")
    check(len(arts["items"]) == 7, "7 artifacts, got %d" % len(arts["items"]))
    st, body, hdrs = s.req("GET", "/api/v1/artifacts/%s" % outputs["onnx"], token=tok_a)
    check(st == 200 and body == b"onnx of export" and hdrs["ETag"] == '"%s"' % outputs["onnx"],
          "artifact download")
    expect(s.req("GET", "/api/v1/artifacts/%s" % outputs["onnx"], token=tok_b), 404, "B downloads A's artifact")
    expect(s.req("GET", "/api/v1/jobs/%s/report" % jb["id"], token=tok_b), 404, "report not ready",
           "report_not_ready")
    expect(s.req("POST", "/api/v1/jobs/%s/retry" % j1["id"], token=tok_a), 409, "retry a succeeded job")
    ok("a whole job: train -> compress -> retrain -> export by a simulated worker; report, artifacts, ETag")

    # -- SSE: the live stream ended with the job; resume after an id
    check(stream_done.wait(10), "the event stream did not end after the job became terminal")
    ids = [int(e["id"]) for e in events]
    check(ids == sorted(ids) and len(set(ids)) == len(ids), "event ids increase")
    types = [e["event"] for e in events]
    check("epoch" in types and "state" in types, "stream carries state and epoch events: %r" % types)
    last = json.loads(events[-1]["data"])
    check(last.get("job_state") == "succeeded", "the last event makes the job terminal: %r" % last)
    mid = ids[len(ids) // 2]
    resumed = follow(after=mid)
    check([int(e["id"]) for e in resumed] == [i for i in ids if i > mid],
          "Last-Event-ID resume returns exactly the later events")
    ok("SSE: %d events live, stream ends at the terminal event, Last-Event-ID resume exact" % len(ids))

    # -- cancel reaches a leased task through the heartbeat; retry requeues
    j3 = expect(submit(s, tok_a, m["id"], d["id"], name="to-cancel"), 201, "submit")
    t3 = expect(s.req("POST", "/agent/v1/claim", {"worker_id": w["worker_id"], "capabilities": caps,
                                                  "wait_s": 5}, agent), 200, "claim")["task"]
    check(t3["job_id"] == j3["id"], "claimed the new job")
    expect(s.req("POST", "/api/v1/jobs/%s/cancel" % j3["id"], token=tok_a), 202, "cancel")
    hb = expect(s.req("POST", "/agent/v1/tasks/%s/heartbeat" % t3["id"], {"fence": t3["fence"]}, agent),
                200, "heartbeat after cancel")
    check(hb["cancel"] is True, "cancel delivered in the heartbeat answer")
    expect(s.req("POST", "/agent/v1/tasks/%s/release" % t3["id"], {"fence": t3["fence"]}, agent), 200,
           "release")
    j3r = expect(s.req("POST", "/api/v1/jobs/%s/retry" % j3["id"], token=tok_a), 202, "retry")
    check(j3r["state"] == "queued" and all(t["state"] == "queued" and t["attempts"] == 0
                                           for t in j3r["tasks"]), "retry requeues: %r" % j3r)
    t4 = expect(s.req("POST", "/agent/v1/claim", {"worker_id": w["worker_id"], "capabilities": caps,
                                                  "wait_s": 5}, agent), 200, "claim after retry")["task"]
    expect(s.req("POST", "/agent/v1/tasks/%s/fail" % t4["id"],
                 {"fence": t4["fence"], "message": "engine exploded", "retryable": False}, agent),
           200, "fail")
    j4 = expect(s.req("GET", "/api/v1/jobs/%s" % j3["id"], token=tok_a), 200, "get")
    check(j4["state"] == "failed" and j4["error"] == "engine exploded", "non-retryable failure: %r" % j4)
    ok("cancel delivered by heartbeat, release, retry, non-retryable fail -> job failed with message")

    # -- a worker's message cannot drive a team's terminal: the CLI shows
    # ESC, OSC, CR, C1 and bidi controls as visible escapes
    j5 = expect(submit(s, tok_a, m["id"], d["id"], name="escapes"), 201, "submit")
    t5 = expect(s.req("POST", "/agent/v1/claim", {"worker_id": w["worker_id"], "capabilities": caps,
                                                  "wait_s": 5}, agent), 200, "claim")["task"]
    evil = "boom \x1b]0;pwned\x07\x1b[2J\rhidden \u202eevil\x9b31m"
    expect(s.req("POST", "/agent/v1/tasks/%s/fail" % t5["id"],
                 {"fence": t5["fence"], "message": evil, "retryable": False}, agent), 200, "fail")
    env = dict(os.environ, DNNPRESS_SERVER="http://127.0.0.1:%d" % s.port, DNNPRESS_TOKEN=tok_a,
               DNNPRESS_CONFIG="/nonexistent/dnnpress-cli.json")
    for args in (["status", j5["id"]], ["--json", "status", j5["id"]], ["list"]):
        p = subprocess.run([os.path.join(BUILD, "dnnpress")] + args, env=env,
                           capture_output=True, timeout=30)
        out = p.stdout + p.stderr
        bad = [b for b in (b"\x1b", b"\x07", b"\r", b"\xc2\x9b", b"\xe2\x80\xae") if b in out]
        check(not bad, "dnnpress %s prints raw control bytes %r: %r" % (args[0], bad, out))
        check(p.returncode == 0 and (b"boom" in out or args[0] == "list"),
              "dnnpress %s: rc %d, shows the message: %r" % (args, p.returncode, out))
    ok("the CLI shows a worker's control characters escaped (status, status --json, list)")

    # -- agents: a team agent serves only its team, a worker id belongs to the
    # token that registered it, a lease to the worker that claimed it, and
    # complete takes only that lease's artifacts, all a task type produces.
    # Checks that do not hold are collected (not fatal at once), and each
    # uses its own lease, so that a run against a server without these rules
    # shows every one of them.
    broken = []

    def want(resp, status, what, code=None, contains=None):
        st, doc, _ = resp
        msg = doc.get("message", "") if isinstance(doc, dict) else ""
        if st != status or (code and doc.get("code") != code) or (contains and contains not in msg):
            broken.append("%s: expected %d %s, got %d: %s" % (what, status, code or "", st,
                                                              repr(doc)[:160]))
            print("server_api: FAIL (going on): " + broken[-1], flush=True)
        return st, doc

    def new_agent(team_id, name):
        return expect(s.req("POST", "/api/v1/tokens", {"team_id": team_id, "scope": "agent",
                                                        "name": name}, ADMIN), 201, "agent token")

    agent_b = new_agent(team_b, "b1")["token"]
    agent_b2 = new_agent(team_b, "b2")["token"]
    wb = expect(s.req("POST", "/agent/v1/register", {"name": "wb", "capabilities": caps}, agent_b),
                201, "register B's worker")["worker_id"]
    # B's jobs on uploaded files, so that they have blobs to steal.
    omb = expect(s.req("POST", "/api/v1/models?name=b-onnx&format=onnx", raw=onnx_bytes(),
                       token=tok_b), 201, "B's onnx model")
    dsb = expect(s.req("POST", "/api/v1/datasets?name=b-idx&format=idx", raw=idx_tar(n_train=12),
                       token=tok_b), 201, "B's dataset")
    jobs_b = [expect(s.req("POST", "/api/v1/jobs", {"model_id": omb["id"], "dataset_id": dsb["id"],
                                                    "spec": SPEC, "name": "b%d" % i}, tok_b),
                     201, "B's job")["id"] for i in range(8)]
    st, doc = want(s.req("POST", "/agent/v1/claim", {"worker_id": w["worker_id"],
                                                     "capabilities": caps, "wait_s": 0}, agent),
                   204, "team A's agent claims while only team B has work")
    if st == 200:  # put it back for the checks below
        s.req("POST", "/agent/v1/tasks/%s/release" % doc["task"]["id"],
              {"fence": doc["task"]["fence"]}, agent)
    st, doc = want(s.req("POST", "/agent/v1/claim", {"worker_id": wb, "capabilities": caps,
                                                     "wait_s": 0}, agent), 404,
                   "team A's agent claims as team B's worker", "not_found", "worker_id")
    if st == 200:
        s.req("POST", "/agent/v1/tasks/%s/release" % doc["task"]["id"],
              {"fence": doc["task"]["fence"]}, agent)
    leases = []
    for jid in jobs_b:
        t = expect(s.req("POST", "/agent/v1/claim", {"worker_id": wb, "capabilities": caps,
                                                     "wait_s": 5}, agent_b), 200, "B's agent claims")["task"]
        check(t["job_id"] == jid and t["type"] == "compress", "B's agent got B's task: %r" % t)
        leases.append(t)
    for sha in (omb["sha256"], dsb["sha256"]):
        want(s.req("GET", "/agent/v1/blobs/%s" % sha, token=agent), 404,
             "team A's agent downloads team B's input of a leased task")
        want(s.req("GET", "/agent/v1/blobs/%s" % sha, token=agent_b2), 404,
             "a B agent whose workers hold no lease downloads B's input")
        st, body, _ = s.req("GET", "/agent/v1/blobs/%s" % sha, token=agent_b)
        check(st == 200 and len(body) == (omb if sha == omb["sha256"] else dsb)["size"],
              "the lease holder downloads its inputs")

    # The holder's fence, sent by other agents (another team's and another of
    # B's): the writes that keep the lease on one lease, each write that would
    # end it on a lease of its own.
    forgers = ((agent, "team A's agent"), (agent_b2, "a second agent of team B"))
    tb = leases[0]
    tf, base = tb["fence"], "/agent/v1/tasks/%s/" % tb["id"]
    for other, who in forgers:
        want(s.req("POST", base + "heartbeat", {"fence": tf, "progress": {"epoch": 9, "pct": 99.0}},
                   other), 409, who + ": heartbeat with the holder's fence", "lease_lost")
        want(s.req("POST", base + "events", {"fence": tf, "events": [
            {"type": "epoch", "data": {"epoch": 9, "forged": True}}]}, other), 409,
             who + ": events with the holder's fence", "lease_lost")
        want(s.req("PUT", base + "artifacts/model?fence=%d" % tf, raw=b"forged-model", token=other),
             409, who + ": artifact with the holder's fence", "lease_lost")
    for t, (op, body) in zip(leases[1:4], (("fail", {"message": "forged", "retryable": False}),
                                            ("release", {}), ("complete", {"outputs": {}}))):
        for other, who in forgers:
            want(s.req("POST", "/agent/v1/tasks/%s/%s" % (t["id"], op),
                       dict(body, fence=t["fence"]), other), 409,
                 "%s: %s with the holder's fence" % (who, op), "lease_lost")
    for t in leases[:4]:
        jbv = expect(s.req("GET", "/api/v1/jobs/%s" % t["job_id"], token=tok_b), 200, "B's job")
        if (jbv["progress"] is not None or jbv["tasks"][0]["state"] != "leased"
                or jbv["tasks"][0]["errors"]):
            broken.append("forged writes changed B's job: %s" % repr(jbv)[:200])

    # complete: outputs must be this lease's uploads, and all a compress
    # produces; each refusal on a lease of its own.
    def upload(t, kind, content):
        return expect(s.req("PUT", "/agent/v1/tasks/%s/artifacts/%s?fence=%d" % (t["id"], kind,
                                                                                 t["fence"]),
                            raw=content, token=agent_b), 201, "B uploads a " + kind)["sha256"]

    def complete(t, outs):
        return s.req("POST", "/agent/v1/tasks/%s/complete" % t["id"],
                     {"fence": t["fence"], "outputs": outs}, agent_b)

    t1, t2, t3, t4 = leases[4:]
    want(complete(t1, {"model": outputs["model"], "report": upload(t1, "report", b'{"r":1}')}),
         400, "complete naming team A's model", "invalid_request", "outputs.model")
    want(complete(t2, {"report": upload(t2, "report", b'{"r":2}')}), 400,
         "compress completed without its model", "invalid_request", "outputs.model")
    want(complete(t3, {"model": upload(t3, "model", b"m3")}), 400,
         "compress completed without its report", "invalid_request", "outputs.report")
    rep4 = upload(t4, "report", b'{"r":4}')
    want(complete(t4, {"model": rep4, "report": rep4}), 400, "a report named as the model",
         "invalid_request", "outputs.model")
    check(not broken, "%d agent/lease checks did not hold:\n  %s" % (len(broken),
                                                                     "\n  ".join(broken)))
    expect(complete(t4, {"model": upload(t4, "model", b"m4"), "report": rep4}), 200,
           "the holder completes with its own outputs")

    # A shared agent (admin-made, no team) serves every team; the API says so.
    st, sh = want(s.req("POST", "/api/v1/tokens", {"team_id": None, "scope": "agent",
                                                   "name": "farm"}, ADMIN), 201, "shared agent token")
    if st == 201:
        check(sh["shared"] is True and sh["team_id"] is None, "shared token object: %r" % sh)
        check(expect(s.req("GET", "/api/v1/me", token=sh["token"]), 200, "me")["shared"] is True,
              "/me of a shared agent says shared")
        ws = expect(s.req("POST", "/agent/v1/register", {"name": "ws", "capabilities": caps},
                          sh["token"]), 201, "register a shared worker")["worker_id"]
        ts = expect(s.req("POST", "/agent/v1/claim", {"worker_id": ws, "capabilities": caps,
                                                      "wait_s": 5}, sh["token"]), 200,
                    "a shared agent claims team B's task")["task"]
        check(ts["job_id"] == t4["job_id"] and ts["type"] == "retrain", "shared claim: %r" % ts)
        wl = expect(s.req("GET", "/api/v1/workers?limit=200", token=ADMIN), 200, "workers")["items"]
        marks = {x["id"]: (x.get("shared"), x.get("team_id")) for x in wl}
        check(marks.get(ws) == (True, None) and marks.get(wb) == (False, team_b),
              "worker objects carry shared and team_id: %r" % marks)
    # The CLI asks for a shared agent by name; a missing --team is not one.
    cli = [os.path.join(BUILD, "dnnpress"), "--json", "token", "create"]
    env = dict(os.environ, DNNPRESS_SERVER="http://127.0.0.1:%d" % s.port, DNNPRESS_TOKEN=ADMIN,
               DNNPRESS_CONFIG="/nonexistent/dnnpress-cli.json")
    p = subprocess.run(cli + ["--scope", "agent"], env=env, capture_output=True, timeout=30)
    check(p.returncode == 2, "token create without --team or --shared is a usage error: %r" % (p,))
    p = subprocess.run(cli + ["--shared", "--name", "cli-farm"], env=env, capture_output=True,
                       timeout=30)
    check(p.returncode == 0, "dnnpress token create --shared: %r" % (p,))
    made = json.loads(p.stdout)
    check(made.get("shared") is True and made.get("team_id") is None and made["scope"] == "agent",
          "dnnpress token create --shared makes a shared agent: %r" % made)
    me_a = expect(s.req("GET", "/api/v1/me", token=agent), 200, "me")
    if me_a.get("shared") is not False:
        broken.append("/me of a team agent must say \"shared\": false: %r" % me_a)
    expect(s.req("POST", "/api/v1/tokens", {"team_id": None, "scope": "team"}, ADMIN), 400,
           "a team token without a team", contains="team_id")
    expect(s.req("POST", "/api/v1/tokens", {"scope": "agent"}, ADMIN), 400,
           "an agent token must say its team (null: shared)", contains="team_id")
    for jid in jobs_b:
        expect(s.req("POST", "/api/v1/jobs/%s/cancel" % jid, token=tok_b), 202, "cancel B's job")
    check(not broken, "%d agent/lease checks did not hold:\n  %s" % (len(broken),
                                                                     "\n  ".join(broken)))
    ok("agents: team A's agent cannot claim B's task, claim as B's worker, download B's blobs; "
       "a second agent cannot heartbeat/events/artifact/fail/release/complete on a lease it does "
       "not hold; complete refuses foreign and missing outputs; a shared agent serves every team")

    # -- long-poll wakes on a new job
    got = {}

    def poller():
        t0 = time.time()
        got["resp"] = s.req("POST", "/agent/v1/claim", {"worker_id": w["worker_id"], "capabilities": caps,
                                                        "wait_s": 20}, agent)
        got["dt"] = time.time() - t0

    th = threading.Thread(target=poller)
    th.start()
    time.sleep(0.5)
    j5 = expect(submit(s, tok_a, m["id"], d["id"], name="wakes"), 201, "submit")
    th.join(25)
    check(got["resp"][0] == 200 and got["resp"][1]["task"]["job_id"] == j5["id"] and got["dt"] < 5,
          "a parked claim wakes when a job arrives (%.2fs)" % got.get("dt", -1))
    leased = got["resp"][1]["task"]
    ok("long-poll: a parked claim is answered %.2fs after the submission" % (got["dt"] - 0.5))

    # -- kill -9 with jobs queued and leased, restart: nothing lost, nothing corrupt
    queued = [expect(submit(s, tok_a, m["id"], d["id"], name="queued-%d" % i), 201, "submit")["id"]
              for i in range(5)]
    before = expect(s.req("GET", "/api/v1/jobs?limit=200", token=tok_a), 200, "list")
    n_before = count_jobs(s, tok_a)
    s.stop(signal.SIGKILL)
    # A partial upload the crash left behind is swept at the next start.
    with open(os.path.join(data, "tmp", "up_partial"), "wb") as f:
        f.write(b"half an upload")
    con = sqlite3.connect(os.path.join(data, "dnnpress.db"))
    check(con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check after kill -9")
    con.close()
    s = Server(data, ["--lease-s", "2", "--backoff-ms", "50"], port=s.port)
    check(count_jobs(s, tok_a) == n_before, "jobs lost across kill -9")
    check(not os.path.exists(os.path.join(data, "tmp", "up_partial")), "partial upload swept")
    after = expect(s.req("GET", "/api/v1/jobs?limit=200", token=tok_a), 200, "list")
    check([(j["id"], j["state"]) for j in before["items"]] ==
          [(j["id"], j["state"]) for j in after["items"]], "job states changed across the restart")
    lt = expect(s.req("GET", "/api/v1/jobs/%s" % j5["id"], token=tok_a), 200, "leased job")
    check(lt["tasks"][0]["state"] in ("leased", "queued"), "the leased task survived")
    # Its lease expires (no worker heartbeats) and it is leased again.
    for jid in queued:
        expect(s.req("POST", "/api/v1/jobs/%s/cancel" % jid, token=tok_a), 202, "cancel")
    t6 = expect(s.req("POST", "/agent/v1/claim", {"worker_id": w["worker_id"], "capabilities": caps,
                                                  "wait_s": 10}, agent), 200, "claim after restart")["task"]
    check(t6["id"] == leased["id"] and t6["fence"] > leased["fence"] and t6["attempt"] == 2,
          "the orphaned lease is re-leased with a higher fence: %r" % t6)
    ok("kill -9 with %d jobs (queued and leased): restart, all there, integrity_check ok, "
       "the orphaned lease is reaped and re-leased" % n_before)

    s.stop(signal.SIGTERM)
    check(s.proc.returncode == 0, "clean shutdown exit status %d" % s.proc.returncode)
    con = sqlite3.connect(os.path.join(data, "dnnpress.db"))
    check(con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check after SIGTERM")
    check(con.execute("PRAGMA user_version").fetchone()[0] >= 1, "user_version records the schema")
    con.close()
    ok("SIGTERM: graceful shutdown, integrity_check ok")

    # -- --local-workers: supervision restarts a worker that exits
    sup = os.path.join(tmp, "sup")
    os.makedirs(sup)
    fake = os.path.join(sup, "fake-worker.sh")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\necho \"$$ $* token=$DNNPRESS_TOKEN\" >> %s/starts\nexit 3\n" % sup)
    os.chmod(fake, 0o755)
    s = Server(os.path.join(sup, "data"), ["--local-workers", "2", "--worker-bin", fake])
    time.sleep(2.2)
    with open(os.path.join(sup, "starts")) as f:
        starts = f.read().split("\n")[:-1]
    check(len(starts) >= 6, "expected >= 3 starts per worker in 2 s (backoff 0.5, 1 s), got %d" % len(starts))
    check(all("serve --server http://127.0.0.1:%d --cache-dir" % s.port in l for l in starts),
          "worker arguments: %r" % starts[0])
    check(any("/cache/w0" in l for l in starts) and any("/cache/w1" in l for l in starts), "one cache per worker")
    wtok = starts[0].split("token=")[1]
    me = expect(s.req("GET", "/api/v1/me", token=wtok), 200, "the minted agent token works")
    check(me["scope"] == "agent" and me.get("shared") is True,
          "local workers get a shared agent token: %r" % me)
    s.stop(signal.SIGTERM)
    check(s.proc.returncode == 0, "shutdown with local workers")
    ok("--local-workers: %d starts of 2 exiting workers (restart with backoff), agent token in the "
       "environment, clean stop" % len(starts))
    for name in ("devices", "token_list", "token_revoke", "token_expiry", "token_cli", "metrics_scope",
                 "workers_scope",
                 "sse_ids", "admin_env", "local_worker_token", "local_worker_lifetime",
                 "worker_token_refused"):
        globals()["check_" + name](tmp)
    print("server_api: all checks passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        for srv in CLEANUP:
            if srv.proc.poll() is None:
                srv.proc.kill()
                srv.proc.wait()
