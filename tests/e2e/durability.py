"""Group commit against the real server on a slow disk (docs/operations.md,
"Durability and latency").

An LD_PRELOAD shim (tests/e2e/slow_fsync.c) makes every fsync take 300 ms.
With --sync group:
  - a job submission is answered only after the fsync that makes it
    durable (it takes at least the 300 ms), and the job survives kill -9;
  - 16 clients submitting at once are answered after a few fsyncs, not 16
    in a row: one fsync serves the commits that arrived during the one
    before (flushes counted in /metrics);
  - GETs keep answering in milliseconds while those writes wait.
With --sync full (SQLite fsyncs each commit under the store's lock) the
same 16 submissions take about 16 fsyncs in a row, which is what group
commit removes.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_lib import Env, call, free_port, stop  # noqa: E402

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build/release"
ADMIN = "durability-e2e-admin-token-0123456789"
SLOW_MS = 300
tmp = tempfile.mkdtemp(prefix="dp-durability-e2e-")
env = Env(BUILD, tmp, ADMIN)


def fail(msg):
    env.fail(msg, "durability")


def ok(port, method, path, token, **kw):
    st, j = call(port, method, path, token=token, **kw)
    if st >= 300:
        fail(f"{method} {path}: {st} {j}")
    return j


def burst(port, token, job, n):
    """n clients submit one job each at once; returns (wall seconds, latencies)."""
    lat, errs = [], []

    def one(i):
        t0 = time.time()
        st, j = call(port, "POST", "/api/v1/jobs", token=token, body=dict(job, name=f"b{i}"))
        lat.append(time.time() - t0)
        if st != 201:
            errs.append((st, j))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errs:
        fail(f"submissions failed: {errs[:2]}")
    return time.time() - t0, lat


def run(sync, shim):
    data = os.path.join(tmp, f"data-{sync}")
    port = free_port()
    srv = env.start_server(data, port, 0, extra=["--sync", sync, "--rate-limit-rps", "0",
                                                 "--quota-active-jobs", "0"],
                           env_extra={"LD_PRELOAD": shim, "SLOW_FSYNC_MS": str(SLOW_MS)})
    team = ok(port, "POST", "/api/v1/teams", ADMIN, body={"name": "d"})["id"]
    tok = ok(port, "POST", "/api/v1/tokens", ADMIN, body={"team_id": team, "scope": "team"})["token"]
    model = ok(port, "POST", "/api/v1/models", tok, body={"name": "m", "arch": "lenet5"})["id"]
    ds = ok(port, "POST", "/api/v1/datasets", tok, body={"name": "d", "builtin": "fashion-mnist"})
    job = {"name": "j", "model_id": model, "dataset_id": ds["id"], "pretrain": {"epochs": 1},
           "spec": {"admm": {"iters": 1, "epochs_per_iter": 1},
                    "layers": [{"match": "*", "prune": {"scheme": "irregular", "rate": 4}}]}}
    probe = ok(port, "POST", "/api/v1/jobs", tok, body=job)["id"]
    # Reads while a burst of writes waits for its fsyncs.
    reads, stop_reads = [], threading.Event()

    def reader():
        while not stop_reads.is_set():
            t0 = time.time()
            st, _ = call(port, "GET", f"/api/v1/jobs/{probe}", token=tok)
            if st == 200:
                reads.append(time.time() - t0)
    rt = threading.Thread(target=reader)
    rt.start()
    wall, lat = burst(port, tok, job, 16)
    stop_reads.set()
    rt.join()
    t0 = time.time()
    last = ok(port, "POST", "/api/v1/jobs", tok, body=dict(job, name="last"))["id"]
    one = time.time() - t0
    metrics = call(port, "GET", "/metrics", token=ADMIN, parse=False)[1].decode()
    os.killpg(srv.pid, signal.SIGKILL)
    srv.wait()
    srv2 = env.start_server(data, port, 0)
    st, _ = call(port, "GET", f"/api/v1/jobs/{last}", token=tok)
    stop(srv2)
    reads.sort()
    p99 = reads[int(len(reads) * 0.99) - 1] if reads else None
    return {"wall": wall, "one": one, "read_p99": p99, "reads": len(reads),
            "after_kill": st, "metrics": metrics, "lat_max": max(lat)}


def main():
    shim = os.path.join(tmp, "slow_fsync.so")
    r = subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", shim,
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "slow_fsync.c"),
                        "-ldl"], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"cannot build the shim: {r.stderr}")
    slow = SLOW_MS / 1000
    g = run("group", shim)
    f = run("full", shim)
    if g["one"] < slow * 0.9:
        fail(f"group: a submission was answered in {g['one']:.3f} s, before its {slow} s fsync")
    if g["after_kill"] != 200 or f["after_kill"] != 200:
        fail(f"an answered submission was lost by kill -9: {g['after_kill']} {f['after_kill']}")
    if g["wall"] > slow * 6:
        fail(f"group: 16 concurrent submissions took {g['wall']:.2f} s: not grouped "
             f"(full: {f['wall']:.2f} s)")
    if f["wall"] < slow * 10:
        fail(f"full: 16 submissions in {f['wall']:.2f} s: the shim did not slow SQLite's fsyncs")
    if g["read_p99"] is None or g["read_p99"] > slow / 2:
        fail(f"group: GET p99 {g['read_p99']} s while writes waited for fsyncs")
    flushes = [x for x in g["metrics"].splitlines() if x.startswith("dnnpress_group_commit_flushes_total")]
    if not flushes:
        fail("/metrics lacks dnnpress_group_commit_flushes_total")
    print(f"durability: ok (fsync {SLOW_MS} ms; 16 concurrent submissions: group "
          f"{g['wall']:.2f} s, full {f['wall']:.2f} s; one submission waits for its fsync "
          f"({g['one']:.2f} s) and survives kill -9; GET p99 during the writes: group "
          f"{g['read_p99'] * 1000:.0f} ms over {g['reads']} reads, full "
          f"{(f['read_p99'] or 0) * 1000:.0f} ms)")


try:
    main()
finally:
    env.kill_all()
    shutil.rmtree(tmp, ignore_errors=True)
