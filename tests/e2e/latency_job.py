#!/usr/bin/env python3
"""auto.objective "latency" through the service: a device uploads its
latency table (PUT /agent/v1/latency), a team's job asks for it by device
selector, the server's local worker fetches it (GET /agent/v1/latency) and
allocates against it; the report names the device and the predicted time.
A job whose table is missing fails its compress task naming what is missing.

usage: latency_job.py BUILD_DIR   (standard library only: /usr/bin/python3)
"""
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build/release"
ADMIN = "latency-e2e-admin-token-0123456789"
tmp = tempfile.mkdtemp(prefix="dp-latency-e2e-")
proc = None


def fail(msg):
    print("latency_job: FAIL: " + msg)
    stop()
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def stop():
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    shutil.rmtree(tmp, ignore_errors=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = free_port()


def req(method, path, body=None, token=None, raw=None):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    h = {"Authorization": "Bearer " + token} if token else {}
    data = raw
    if body is not None:
        data = json.dumps(body)
        h["Content-Type"] = "application/json"
    elif raw is not None:
        h["Content-Type"] = "application/octet-stream"
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    payload = r.read()
    c.close()
    return r.status, (json.loads(payload) if payload[:1] in (b"{", b"[") else payload)


def expect(resp, status, what):
    check(resp[0] == status, "%s: expected %d, got %d: %r" % (what, status, resp[0], resp[1]))
    return resp[1]


def wait_job(job, tok, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        doc = expect(req("GET", "/api/v1/jobs/" + job, token=tok), 200, "job")
        if doc["state"] in ("succeeded", "failed", "canceled"):
            return doc
        time.sleep(0.5)
    fail("job %s did not finish in %d s" % (job, timeout))


def main():
    global proc
    log = open(os.path.join(tmp, "server.log"), "ab")
    env = dict(os.environ, DNNPRESS_ADMIN_TOKEN=ADMIN, DNNPRESS_LIMIT_TRAIN="1024",
               DNNPRESS_LIMIT_TEST="256", OMP_NUM_THREADS="2")
    proc = subprocess.Popen([os.path.join(BUILD, "dnnpress-server"), "--listen",
                             "127.0.0.1:%d" % PORT, "--data-dir", os.path.join(tmp, "data"),
                             "--local-workers", "1"], stdout=log, stderr=log, env=env,
                            start_new_session=True)
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            if req("GET", "/healthz")[0] == 200:
                break
        except OSError:
            time.sleep(0.1)
    team = expect(req("POST", "/api/v1/teams", {"name": "lat"}, ADMIN), 201, "team")
    tok = expect(req("POST", "/api/v1/tokens", {"team_id": team["id"], "scope": "team"}, ADMIN),
                 201, "team token")["token"]
    dev = expect(req("POST", "/api/v1/tokens", {"scope": "device", "name": "d"}, tok), 201,
                 "device token")["token"]
    expect(req("POST", "/agent/v1/register", {"name": "board-1", "capabilities": ["profile"],
                                              "labels": {"kind": "board"}}, dev), 201, "register")

    # A small pretrained LeNet-5, uploaded: its sha256 names the architecture
    # for the table (an uploaded model has no built-in name).
    l5 = os.path.join(tmp, "l5.safetensors")
    subprocess.run([os.path.join(BUILD, "dnnpress-worker"), "train", "--model", "lenet5",
                    "--data", "idx:/usr/share/datasets/fashion-mnist", "--limit-train", "512",
                    "--limit-test", "64", "--epochs", "1", "--threads", "2", "--quiet", "--out",
                    l5], check=True, capture_output=True, timeout=300)
    blob = open(l5, "rb").read()
    sha = hashlib.sha256(blob).hexdigest()
    model = expect(req("POST", "/api/v1/models?name=l5&format=safetensors", raw=blob, token=tok),
                   201, "model")
    data = expect(req("POST", "/api/v1/datasets", {"name": "f", "builtin": "fashion-mnist"}, tok),
                  201, "dataset")
    # conv1 and conv2 hold the device's time, fc1 and fc2 almost none.
    dense = {"conv1": 2.0, "conv2": 3.0, "fc1": 0.05, "fc2": 0.01}
    rates = [1, 2, 4, 8, 16, 32, 64]
    table = {"arch": sha, "scheme": "irregular", "method": "synthetic",
             "layers": [{"name": n, "rates": rates, "ms": [d * (0.2 + 0.8 / r) for r in rates]}
                        for n, d in dense.items()]}
    expect(req("PUT", "/agent/v1/latency", table, dev), 200, "the device uploads its table")

    def job(name, scheme):
        spec = {"admm": {"iters": 1, "epochs_per_iter": 1}, "retrain": {"epochs": 1},
                "auto": {"rate": 6, "objective": "latency", "device": {"kind": "board"},
                         "search_iters": 2000, "eval_images": 128},
                "layers": [{"match": "*", "prune": {"scheme": scheme}}]}
        return expect(req("POST", "/api/v1/jobs", {"name": name, "model_id": model["id"],
                                                   "dataset_id": data["id"], "spec": spec,
                                                   "max_attempts": 1}, tok), 201, "submit")
    good = wait_job(job("lat", "irregular")["id"], tok)
    check(good["state"] == "succeeded", "the latency job succeeds: %r" % good)
    rep = expect(req("GET", "/api/v1/jobs/%s/report" % good["id"], token=tok), 200, "report")
    au = rep.get("auto", {})
    check(au.get("objective") == "latency" and au.get("device") == "board-1"
          and au.get("predicted_ms", 1e9) <= au.get("budget_ms", 0) * (1 + 1e-9)
          and abs(au.get("dense_ms", 0) - 5.06) < 1e-9,
          "the report's auto section names the device and meets the time budget: %r" % au)
    bad = wait_job(job("no-table", "column")["id"], tok)
    msg = json.dumps(bad)
    check(bad["state"] == "failed" and "no latency table" in msg,
          "a job without a table fails naming it: %s" % msg[:2000])
    print("latency_job: ok: a device's uploaded table reaches the worker through GET "
          "/agent/v1/latency; the report names the device (predicted %.3f ms of %.3f budget); "
          "no table: the task fails naming it" % (au["predicted_ms"], au["budget_ms"]))
    stop()


if __name__ == "__main__":
    try:
        main()
    except Exception:
        stop()
        raise
