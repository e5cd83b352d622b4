"""Backup under load, restore, check (docs/operations.md, "Backup and restore").

The real dnnpress-server with one local worker runs a short LeNet-5 job to
the end; then, while a worker runs more jobs (events, checkpoints, artifacts
written) and two client threads upload new models (new blobs) and submit
jobs as fast as the server takes them, `dnnpress-server backup` copies the
data directory. Everything that existed before the backup began (models,
jobs, artifacts, with their bytes) must be in the restored directory, which
`check` finds clean and a server started on it serves. Then the refusals:
a backup with a flipped byte in a blob, a member outside the layout, a
restore into a non-empty directory, a data directory with a missing or
corrupt blob (check names it), a directory that is not a data directory.
"""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_lib import Env, call, free_port, stop  # noqa: E402
from e2e_lib import items as _items  # noqa: E402
from e2e_lib import wait_job as _wait_job  # noqa: E402

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build/release"
ADMIN = "backup-e2e-admin-token-0123456789"
tmp = tempfile.mkdtemp(prefix="dp-backup-e2e-")
env = Env(BUILD, tmp, ADMIN)
SERVER = env.server


def fail(msg):
    env.fail(msg, "backup")


def start_server(data, port, workers):
    return env.start_server(data, port, workers)


def ok(port, method, path, token, **kw):
    st, j = call(port, method, path, token=token, **kw)
    if st >= 300:
        fail(f"{method} {path}: {st} {j}")
    return j


def run(cmd, expect=0):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != expect:
        fail(f"{' '.join(cmd)}: exit {r.returncode} (wanted {expect}):\n{r.stdout}{r.stderr}")
    return r


def items(port, path, token):
    return _items(port, path, token, ok)


def wait_job(port, token, job_id, timeout=300):
    return _wait_job(port, token, job_id, ok, fail, timeout)


def main():
    data = os.path.join(tmp, "data")
    port = free_port()
    srv = start_server(data, port, 1)
    team = ok(port, "POST", "/api/v1/teams", ADMIN, body={"name": "backup"})["id"]
    token = ok(port, "POST", "/api/v1/tokens", ADMIN,
               body={"team_id": team, "scope": "team"})["token"]
    model = ok(port, "POST", "/api/v1/models", token, body={"name": "m", "arch": "lenet5"})["id"]
    dataset = ok(port, "POST", "/api/v1/datasets", token,
                 body={"name": "d", "builtin": "fashion-mnist"})["id"]
    job = {"name": "b", "model_id": model, "dataset_id": dataset,
           "pretrain": {"epochs": 1, "seed": 1},
           "spec": {"admm": {"iters": 1, "epochs_per_iter": 1}, "retrain": {"epochs": 1},
                    "layers": [{"match": "*", "prune": {"scheme": "irregular", "rate": 4}}]},
           "export": {"format": "onnx"}}
    first = ok(port, "POST", "/api/v1/jobs", token, body=job)["id"]
    if wait_job(port, token, first)["state"] != "succeeded":
        fail("the first job did not succeed")
    arts = ok(port, "GET", f"/api/v1/jobs/{first}/artifacts", token)["items"]
    st_art = next(a for a in arts if a["kind"] == "model")
    st, model_bytes = call(port, "GET", f"/api/v1/artifacts/{st_art['sha256']}", token=token,
                           parse=False)
    if st != 200:
        fail(f"the model artifact did not download: {st}")
    hdr = 8 + int.from_bytes(model_bytes[:8], "little")

    # ---- load: a worker busy with jobs, new blobs and submissions -----------
    stop_load = threading.Event()
    counts = {"models": 0, "jobs": 0}
    errors = []

    def uploader():
        i = 0
        while not stop_load.is_set():
            i += 1
            b = bytearray(model_bytes)
            b[hdr + (i * 4) % (len(b) - hdr - 4)] ^= 0x01  # one weight differs: a new blob
            st, j = call(port, "POST", f"/api/v1/models?name=u{i}&format=safetensors", token=token,
                         raw=bytes(b))
            if st != 201:
                errors.append(f"upload {st} {j}")
                return
            counts["models"] += 1

    def submitter():
        while not stop_load.is_set():
            st, j = call(port, "POST", "/api/v1/jobs", body=job, token=token)
            if st != 201:
                errors.append(f"submit {st} {j}")
                return
            counts["jobs"] += 1
            time.sleep(0.02)

    threads = [threading.Thread(target=uploader), threading.Thread(target=submitter)]
    for t in threads:
        t.start()
    time.sleep(3)  # the worker is inside the next jobs by now

    # Everything that exists before the backup begins must come back.
    before_models = {m["id"]: m for m in items(port, "/api/v1/models", token)}
    before_jobs = {j["id"]: j for j in items(port, "/api/v1/jobs", token)}
    # Artifacts of finished jobs: a running task's uploads belong to its
    # attempt, which the restored server's reaper rightly takes back.
    before_arts = {}
    for jid in (j for j, v in before_jobs.items() if v["state"] == "succeeded"):
        for a in ok(port, "GET", f"/api/v1/jobs/{jid}/artifacts", token)["items"]:
            before_arts[a["sha256"]] = a
    backup = os.path.join(tmp, "b.tar")
    t0 = time.time()
    r = run([SERVER, "backup", "--data-dir", data, "--to", backup])
    backup_s = time.time() - t0
    summary = json.loads(r.stdout)
    time.sleep(1)
    stop_load.set()
    for t in threads:
        t.join()
    if errors:
        fail(f"the load failed: {errors[:3]}")
    if counts["models"] < 3 or counts["jobs"] < 3:
        fail(f"too little load ran: {counts}")
    # The live directory is sound too, checked while the server runs.
    run([SERVER, "check", "--data-dir", data])
    stop(srv)

    # ---- restore and compare ------------------------------------------------
    restored = os.path.join(tmp, "restored")
    run([SERVER, "restore", "--from", backup, "--data-dir", restored])
    c = json.loads(run([SERVER, "check", "--data-dir", restored]).stdout)
    if not c["ok"] or c["blobs"] != summary["blobs"]:
        fail(f"check of the restored directory: {c} (backup: {summary})")
    port2 = free_port()
    srv2 = start_server(restored, port2, 0)
    after_models = {m["id"]: m for m in items(port2, "/api/v1/models", token)}
    after_jobs = {j["id"]: j for j in items(port2, "/api/v1/jobs", token)}
    for mid, m in before_models.items():
        if mid not in after_models or after_models[mid].get("sha256") != m.get("sha256"):
            fail(f"model {mid} missing or changed after restore")
    for jid in before_jobs:
        if jid not in after_jobs:
            fail(f"job {jid} missing after restore")
    if after_jobs[first]["state"] != "succeeded":
        fail("the finished job is not succeeded after restore")
    for sha, a in before_arts.items():
        st, body = call(port2, "GET", f"/api/v1/artifacts/{sha}", token=token, parse=False)
        if st != 200 or hashlib.sha256(body).hexdigest() != sha:
            fail(f"artifact {sha} ({a['kind']}) missing or corrupt after restore: {st}")
    stop(srv2)

    # ---- refusals -----------------------------------------------------------
    # A backup with one flipped byte in a blob: restore refuses, names it.
    bad = os.path.join(tmp, "bad.tar")
    with tarfile.open(backup) as src, tarfile.open(bad, "w", format=tarfile.PAX_FORMAT) as dst:
        flipped = None
        for m in src.getmembers():
            f = src.extractfile(m).read()
            if m.name.startswith("artifacts/") and flipped is None and len(f) > 100:
                f = f[:50] + bytes([f[50] ^ 0xFF]) + f[51:]
                flipped = m.name
            dst.addfile(m, io.BytesIO(f))
    r = run([SERVER, "restore", "--from", bad, "--data-dir", os.path.join(tmp, "r2")], expect=1)
    if "corrupt" not in r.stderr or flipped.split("/")[-1] not in r.stderr:
        fail(f"restore of a tampered backup: {r.stderr}")
    if os.path.exists(os.path.join(tmp, "r2", "dnnpress.db")):
        fail("a refused restore left a data directory")
    # A member outside the layout.
    evil = os.path.join(tmp, "evil.tar")
    with tarfile.open(backup) as src, tarfile.open(evil, "w", format=tarfile.PAX_FORMAT) as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m))
        ti = tarfile.TarInfo("../escaped")
        ti.size = 3
        dst.addfile(ti, io.BytesIO(b"bad"))
    r = run([SERVER, "restore", "--from", evil, "--data-dir", os.path.join(tmp, "r3")], expect=1)
    if "unexpected member ../escaped" not in r.stderr or os.path.exists(
            os.path.join(tmp, "escaped")):
        fail(f"restore of a backup with ../escaped: {r.stderr}")
    # Into a directory that is not empty.
    r = run([SERVER, "restore", "--from", backup, "--data-dir", restored], expect=1)
    if "not empty" not in r.stderr:
        fail(f"restore into a used directory: {r.stderr}")
    # check finds a missing and a corrupt blob, and names them.
    blobs = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(restored, "artifacts"))
                   for f in fs)
    os.unlink(blobs[0])
    with open(blobs[1], "r+b") as f:
        f.seek(10)
        ch = f.read(1)
        f.seek(10)
        f.write(bytes([ch[0] ^ 0xFF]))
    r = run([SERVER, "check", "--data-dir", restored], expect=1)
    c = json.loads(r.stdout)
    if c["missing"] != 1 or c["corrupt"] != 1 or os.path.basename(blobs[0]) not in r.stderr \
            or os.path.basename(blobs[1]) not in r.stderr:
        fail(f"check of a damaged directory: {r.stdout} {r.stderr}")
    r = run([SERVER, "backup", "--data-dir", restored, "--to", os.path.join(tmp, "c.tar")], expect=1)
    if "check --data-dir" not in r.stderr or os.path.exists(os.path.join(tmp, "c.tar")):
        fail(f"backup of a damaged directory: {r.stderr}")
    r = run([SERVER, "check", "--data-dir", tmp + "/nothing"], expect=1)
    if "not a dnnpress data directory" not in r.stderr and "data directory" not in r.stderr:
        fail(f"check of a non-data directory: {r.stderr}")
    print(f"backup: ok (backup under load: {summary['blobs']} blobs, "
          f"{summary['blob_bytes'] / 1e6:.1f} MB in {backup_s:.2f} s while "
          f"{counts['models']} uploads and {counts['jobs']} submissions ran; "
          f"{len(before_jobs)} jobs, {len(before_models)} models, {len(before_arts)} artifacts "
          f"restored; 6 refusals checked)")


try:
    main()
finally:
    env.kill_all()
    shutil.rmtree(tmp, ignore_errors=True)
