"""Small helpers the server e2e scripts share: a real dnnpress-server on a
free loopback port, JSON calls with a token, paging, waiting for a job."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time


class Env:
    def __init__(self, build, tmp, admin):
        self.server = os.path.join(build, "dnnpress-server")
        self.tmp = tmp
        self.admin = admin
        self.procs = []

    def fail(self, msg, name="e2e"):
        print(f"{name}: FAIL: {msg}", file=sys.stderr)
        for f in sorted(os.listdir(self.tmp)):
            if f.endswith(".log"):
                with open(os.path.join(self.tmp, f), errors="replace") as fh:
                    print(f"--- {f}\n{fh.read()[-2500:]}", file=sys.stderr)
        raise SystemExit(1)

    def start_server(self, data, port, workers, extra=(), env_extra=None):
        env = dict(os.environ, DNNPRESS_ADMIN_TOKEN=self.admin, DNNPRESS_LIMIT_TRAIN="300",
                   DNNPRESS_LIMIT_TEST="100", OMP_NUM_THREADS="1")
        env.update(env_extra or {})
        log = open(os.path.join(self.tmp, f"server-{port}.log"), "w")
        p = subprocess.Popen([self.server, "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                              "--local-workers", str(workers), "--lease-s", "5", *extra],
                             stdout=log, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
        self.procs.append(p)
        for _ in range(200):
            try:
                if call(port, "GET", "/healthz")[0] == 200:
                    return p
            except OSError:
                pass
            time.sleep(0.05)
        self.fail("the server did not start")

    def kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def call(port, method, path, body=None, token=None, raw=None, ctype=None, parse=True,
         headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    elif raw is not None:
        h["Content-Type"] = ctype or "application/octet-stream"
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    out = r.read()
    c.close()
    if not parse:
        return r.status, out
    try:
        return r.status, json.loads(out)
    except ValueError:
        return r.status, out


def items(port, path, token, ok):
    out, cursor = [], None
    while True:
        j = ok(port, "GET", path + (f"?cursor={cursor}" if cursor else ""), token)
        out += j["items"]
        cursor = j.get("next_cursor")
        if not cursor:
            return out


def wait_job(port, token, job_id, ok, fail, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = ok(port, "GET", f"/api/v1/jobs/{job_id}", token)
        if j["state"] in ("succeeded", "failed", "cancelled"):
            return j
        time.sleep(0.3)
    fail(f"job {job_id} did not end")
