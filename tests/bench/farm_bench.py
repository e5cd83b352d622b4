#!/usr/bin/python3
"""The device table through the service (make bench; docs/benchmarks.md, "Device farm").

usage: farm_bench.py BUILD_DIR MODELS_DIR     (MODELS_DIR: tests/bench/compile_models.py's output)

For each model of BENCH_COMPILE_MODELS (vgg16-cifar, resnet20-cifar: random
weights, the dense and the pattern-pruned variant of compile_models.py):

  service  a dnnpress-server without local workers and one profiling device
           on this machine (dnnpress-worker serve --profile, a shared device
           token); a job whose model is the dense ONNX, with compile (native)
           and a profile on that device. This script plays the agent of the
           compress, retrain, export and compile tasks: the ADMM steps are not
           what is measured here, so they deliver placeholders, and compile
           delivers the bundle of the pattern-pruned ONNX compiled here with
           `dnnpress-worker compile` (what a real compile task ships). The
           device then does what it does for every job: downloads the bundle,
           builds it, times it, compiles the job's dense model, times that,
           and uploads the result, which `dnnpress report --json` returns.
  direct   the same two bundles built and timed here with their own bench,
           one after the other, without the service: the figures the device
           table must agree with (bench-compile's "ours" rows).

Environment: THREADS=2, RUNS=200, WARMUP=20, BENCH_COMPILE_MODELS.
"""
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time

BUILD, MODELS_DIR = sys.argv[1], sys.argv[2]
SERVER = os.path.join(BUILD, "dnnpress-server")
WORKER = os.path.abspath(os.path.join(BUILD, "dnnpress-worker"))
THREADS = int(os.environ.get("THREADS", "2"))
RUNS = int(os.environ.get("RUNS", "200"))
WARMUP = int(os.environ.get("WARMUP", "20"))
MODELS = os.environ.get("BENCH_COMPILE_MODELS", "vgg16-cifar resnet20-cifar").split()
ADMIN = "bench-farm-admin-token-0123456789"
SPEC = {"admm": {"iters": 1, "epochs_per_iter": 1, "rho": 1e-3}, "retrain": {"epochs": 1},
        "layers": [{"match": "*", "prune": {"scheme": "irregular", "rate": 2}}]}

tmp = tempfile.mkdtemp(prefix="dp-bench-farm-")
procs = []


def die(msg):
    print("bench-farm: FAIL: %s (logs kept in %s)" % (msg, tmp), file=sys.stderr, flush=True)
    for p in procs:
        if p.poll() is None:
            p.kill()
    sys.exit(1)


def req(port, method, path, body=None, token=None, raw=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = {"Authorization": "Bearer " + token} if token else {}
    data = None
    if body is not None:
        data, h["Content-Type"] = json.dumps(body), "application/json"
    if raw is not None:
        data, h["Content-Type"] = raw, "application/octet-stream"
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    payload = r.read()
    c.close()
    if r.status >= 300:
        die("%s %s: %d %s" % (method, path, r.status, payload[:300]))
    return json.loads(payload) if payload[:1] in (b"{", b"[") else payload


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        die("%s: %s" % (" ".join(cmd), (p.stderr or p.stdout)[-600:]))
    return p.stdout


def bundle_tar(d):
    """The bundle's files as a flat ustar tar (what a compile task uploads)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name in sorted(os.listdir(d)):
            info = t.gettarinfo(os.path.join(d, name), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(os.path.join(d, name), "rb") as f:
                t.addfile(info, f)
    return buf.getvalue()


def direct(onnx, d):
    """Compiles, builds and times onnx here: bench's JSON line."""
    run([WORKER, "compile", "--model", onnx, "--out", d, "--target", "native", "--threads",
         str(THREADS), "--name", "model"])
    run(["make", "-s", "-C", d])
    out = run([os.path.join(d, "bench"), "--runs", str(RUNS), "--warmup", str(WARMUP),
               "--threads", str(THREADS)])
    return json.loads(out.strip().splitlines()[-1])


def main():
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    p = port.getsockname()[1]
    port.close()
    env = dict(os.environ, DNNPRESS_ADMIN_TOKEN=ADMIN)
    log = open(os.path.join(tmp, "server.log"), "ab")
    procs.append(subprocess.Popen([SERVER, "--listen", "127.0.0.1:%d" % p, "--data-dir",
                                   os.path.join(tmp, "data"), "--local-workers", "0"],
                                  stdout=log, stderr=log, env=env))
    for _ in range(100):
        try:
            req(p, "GET", "/healthz")
            break
        except OSError:
            time.sleep(0.1)
    team = req(p, "POST", "/api/v1/teams", {"name": "bench"}, ADMIN)["id"]
    tok = req(p, "POST", "/api/v1/tokens", {"team_id": team, "scope": "team"}, ADMIN)["token"]
    dev = req(p, "POST", "/api/v1/tokens", {"team_id": None, "scope": "device"}, ADMIN)["token"]
    agent = req(p, "POST", "/api/v1/tokens", {"team_id": team, "scope": "agent"}, ADMIN)["token"]
    dlog = open(os.path.join(tmp, "device.log"), "ab")
    procs.append(subprocess.Popen(
        [WORKER, "serve", "--server", "http://127.0.0.1:%d" % p, "--cache-dir",
         os.path.join(tmp, "cache"), "--profile", "--device-name", "local",
         "--device-labels", "bench=1", "--threads", str(THREADS), "--wait-s", "2"],
        stdout=dlog, stderr=dlog, env=dict(os.environ, DNNPRESS_TOKEN=dev,
                                           OMP_NUM_THREADS=str(THREADS))))
    for _ in range(100):
        if req(p, "GET", "/api/v1/devices", token=tok)["items"]:
            break
        time.sleep(0.1)
    dataset = req(p, "POST", "/api/v1/datasets", {"name": "fm", "builtin": "fashion-mnist"},
                  tok)["id"]
    caps = ["compress", "retrain", "export", "compile"]
    w = req(p, "POST", "/agent/v1/register", {"name": "bench-agent", "capabilities": caps},
            agent)["worker_id"]
    rows = []
    for m in MODELS:
        dense_onnx = os.path.join(MODELS_DIR, m + "_dense.onnx")
        pattern_onnx = os.path.join(MODELS_DIR, m + "_pattern.onnx")
        with open(dense_onnx, "rb") as f:
            model = req(p, "POST", "/api/v1/models?name=%s&format=onnx" % m, token=tok,
                        raw=f.read())["id"]
        job = req(p, "POST", "/api/v1/jobs", {
            "name": m, "model_id": model, "dataset_id": dataset, "spec": SPEC,
            "compile": {"target": "native"},
            "profile": {"devices": [{"name": "local"}], "runs": RUNS, "warmup": WARMUP,
                        "threads": [THREADS], "timeout_s": 1200}}, tok)["id"]
        bdir = os.path.join(tmp, m + "_pattern")
        run([WORKER, "compile", "--model", pattern_onnx, "--out", bdir, "--target", "native",
             "--threads", str(THREADS), "--name", "model"])
        code = bundle_tar(bdir)
        outs = {"compress": ("model", "report"), "retrain": ("model", "report"),
                "export": ("onnx",), "compile": ("code", "compile_report")}
        for _ in range(4):
            t = req(p, "POST", "/agent/v1/claim", {"worker_id": w, "capabilities": caps,
                                                   "wait_s": 10}, agent)["task"]
            done = {}
            for kind in outs[t["type"]]:
                body = code if kind == "code" else b'{"placeholder": true}'
                done[kind] = req(p, "PUT", "/agent/v1/tasks/%s/artifacts/%s?fence=%d" % (
                    t["id"], kind, t["fence"]), token=agent, raw=body)["sha256"]
            req(p, "POST", "/agent/v1/tasks/%s/complete" % t["id"],
                {"fence": t["fence"], "outputs": done}, agent)
        t0 = time.time()
        while True:
            j = req(p, "GET", "/api/v1/jobs/" + job, token=tok)
            if j["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(1)
        if j["state"] != "succeeded":
            die("%s: %s" % (m, json.dumps(j)[:800]))
        service_s = time.time() - t0
        arts = req(p, "GET", "/api/v1/jobs/%s/artifacts" % job, token=tok)["items"]
        prof = [a for a in arts if a["kind"] == "profile"]
        res = req(p, "GET", "/api/v1/artifacts/" + prof[0]["sha256"], token=tok)
        r0 = res["results"][0]
        # Direct, here, after the service's run: the same bundle, and the dense one.
        pat = direct(pattern_onnx, os.path.join(tmp, m + "_pattern_direct"))
        den = direct(dense_onnx, os.path.join(tmp, m + "_dense_direct"))
        rows.append((m, r0, pat, den, service_s))
    print("bench-farm: %d cores, THREADS=%d, batch 1, %d runs after %d, target native, %s"
          % (os.cpu_count(), THREADS, RUNS, WARMUP, time.strftime("%Y-%m-%d %H:%M UTC",
                                                                   time.gmtime())))
    print("%-16s %-8s %12s %12s %9s   %12s %12s %9s %7s" % (
        "model", "", "pattern p50", "dense p50", "speed-up", "pattern min", "dense min",
        "speed-up", "job s"))
    for m, r0, pat, den, s in rows:
        c, d = r0["compressed"]["latency_ms"], r0["dense"]["latency_ms"]
        print("%-16s %-8s %9.3f ms %9.3f ms %8.2fx   %9.3f ms %9.3f ms %8.2fx %7.0f" % (
            m, "service", c["p50"], d["p50"], d["p50"] / c["p50"], c["min"], d["min"],
            d["min"] / c["min"], s))
        cp, dp = pat["latency_ms"], den["latency_ms"]
        print("%-16s %-8s %9.3f ms %9.3f ms %8.2fx   %9.3f ms %9.3f ms %8.2fx" % (
            "", "direct", cp["p50"], dp["p50"], dp["p50"] / cp["p50"], cp["min"], dp["min"],
            dp["min"] / cp["min"]))
    for p_ in procs:
        p_.terminate()
        p_.wait()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        for p_ in procs:
            if p_.poll() is None:
                p_.kill()
