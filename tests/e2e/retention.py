"""Retention and deletion against the real server (docs/operations.md, "Retention").

GC runs every second with no grace period, the harshest setting, while:
  - a worker runs a whole job (checkpoints, artifacts, events uploaded as it
    goes): the job succeeds and every artifact downloads intact;
  - a client uploads the same model bytes, deletes the model, uploads them
    again, over and over (each delete makes the blob unreferenced, so a GC
    pass may remove it exactly while the next upload finds it present):
    every upload's content downloads intact right after it was accepted.
Then: an Idempotency-Key expires (reused with another body after its time
to live it creates a new job), checkpoints and events of ended jobs go
after their retention, DELETE of a running job is 409, of a finished one
204 (its blobs are collected), a model a job still names is 409 and free
afterwards, another team's job is 404, an agent token is 403, and
`dnnpress-server check` finds the directory clean.
"""
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_lib import Env, call, free_port, stop  # noqa: E402
from e2e_lib import wait_job as _wait_job  # noqa: E402

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build/release"
ADMIN = "retention-e2e-admin-token-0123456789"
tmp = tempfile.mkdtemp(prefix="dp-retention-e2e-")
env = Env(BUILD, tmp, ADMIN)


def fail(msg):
    env.fail(msg, "retention")


def ok(port, method, path, token, **kw):
    st, j = call(port, method, path, token=token, **kw)
    if st >= 300:
        fail(f"{method} {path}: {st} {j}")
    return j


def db_count(data, sql, *args):
    con = sqlite3.connect(f"file:{data}/dnnpress.db?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchone()[0]
    finally:
        con.close()


def blob_files(data):
    return {f for _, _, fs in os.walk(os.path.join(data, "artifacts")) for f in fs}


def main():
    data = os.path.join(tmp, "data")
    port = free_port()
    srv = env.start_server(data, port, 1, extra=[
        "--gc-interval-s", "1", "--gc-grace-s", "0", "--idempotency-ttl-s", "3",
        "--checkpoint-retention-s", "2", "--events-retention-s", "4"])
    team = ok(port, "POST", "/api/v1/teams", ADMIN, body={"name": "a"})["id"]
    other = ok(port, "POST", "/api/v1/teams", ADMIN, body={"name": "b"})["id"]
    token = ok(port, "POST", "/api/v1/tokens", ADMIN,
               body={"team_id": team, "scope": "team"})["token"]
    token_b = ok(port, "POST", "/api/v1/tokens", ADMIN,
                 body={"team_id": other, "scope": "team"})["token"]
    agent = ok(port, "POST", "/api/v1/tokens", ADMIN,
               body={"team_id": team, "scope": "agent"})["token"]
    model = ok(port, "POST", "/api/v1/models", token, body={"name": "m", "arch": "lenet5"})["id"]
    dataset = ok(port, "POST", "/api/v1/datasets", token,
                 body={"name": "d", "builtin": "fashion-mnist"})["id"]
    job = {"name": "r", "model_id": model, "dataset_id": dataset,
           "pretrain": {"epochs": 2, "seed": 1},
           "spec": {"admm": {"iters": 2, "epochs_per_iter": 1}, "retrain": {"epochs": 2},
                    "layers": [{"match": "*", "prune": {"scheme": "irregular", "rate": 4}}]},
           "export": {"format": "onnx"}}
    first = ok(port, "POST", "/api/v1/jobs", token, body=job)["id"]
    # At once, while the job is queued or running (a quiet machine ends it
    # within seconds): DELETE refuses it, and the model it uses.
    st, j = call(port, "DELETE", f"/api/v1/jobs/{first}", token=token)
    if st != 409 or j.get("code") != "job_not_finished":
        fail(f"DELETE of an unfinished job: {st} {j}")
    st, j = call(port, "DELETE", f"/api/v1/models/{model}", token=token)
    if st != 409 or j.get("code") != "in_use":
        fail(f"DELETE of a model a job uses: {st} {j}")

    # A model file to upload again and again: the first job's pretrained
    # checkpoint would do, but any valid safetensors file does; make one
    # from the built-in architecture through the worker's own command.
    mfile = os.path.join(tmp, "m.safetensors")
    r = subprocess.run([os.path.join(BUILD, "dnnpress-worker"), "train", "--model", "lenet5",
                        "--data", "idx:/usr/share/datasets/fashion-mnist", "--limit-train", "64",
                        "--limit-test", "64", "--epochs", "1", "--out", mfile],
                       capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(mfile):
        fail(f"cannot make a model file: {r.stderr[-500:]}")
    mbytes = open(mfile, "rb").read()
    msha = hashlib.sha256(mbytes).hexdigest()

    stop_churn = threading.Event()
    churn = {"rounds": 0, "errors": []}

    def churner():
        while not stop_churn.is_set():
            st, m = call(port, "POST", "/api/v1/models?name=c&format=safetensors", token=token,
                         raw=mbytes)
            if st != 201:
                churn["errors"].append(f"upload {st} {m}")
                return
            st, body = call(port, "GET", f"/api/v1/models/{m['id']}/content", token=token,
                            parse=False)
            if st != 200 or hashlib.sha256(body).hexdigest() != msha:
                churn["errors"].append(f"content of {m['id']} right after upload: {st}")
                return
            time.sleep(0.3)  # let a GC pass run between delete and re-upload
            st, _ = call(port, "DELETE", f"/api/v1/models/{m['id']}", token=token)
            if st != 204:
                churn["errors"].append(f"delete {st}")
                return
            churn["rounds"] += 1
            time.sleep(0.8)

    t = threading.Thread(target=churner)
    t.start()
    done = _wait_job(port, token, first, ok, fail)
    # A fast machine ends the job in seconds: the churn goes on for at
    # least five rounds, each one racing a GC pass.
    t0 = time.time()
    while churn["rounds"] < 5 and not churn["errors"] and time.time() - t0 < 60:
        time.sleep(0.2)
    stop_churn.set()
    t.join()
    if done["state"] != "succeeded":
        fail(f"the job raced by GC ended {done['state']}: {done.get('error')}")
    if churn["errors"] or churn["rounds"] < 3:
        fail(f"upload/delete churn: {churn}")
    arts = ok(port, "GET", f"/api/v1/jobs/{first}/artifacts", token)["items"]
    for a in arts:
        st, body = call(port, "GET", f"/api/v1/artifacts/{a['sha256']}", token=token, parse=False)
        if st != 200 or hashlib.sha256(body).hexdigest() != a["sha256"]:
            fail(f"artifact {a['kind']} of the job raced by GC: {st}")

    # Idempotency keys expire: another body under the same key is refused
    # at first, and creates a job once the key's time to live is over.
    key = {"Idempotency-Key": "k-1"}
    ok(port, "POST", "/api/v1/jobs", token, body=dict(job, name="i1"), headers=key)
    st, j = call(port, "POST", "/api/v1/jobs", token=token, body=dict(job, name="i2"),
                 headers=key)
    if st < 400:
        fail(f"a reused Idempotency-Key with another body: {st} {j}")
    time.sleep(5)
    st, j = call(port, "POST", "/api/v1/jobs", token=token, body=dict(job, name="i2"),
                 headers=key)
    if st != 201:
        fail(f"an expired Idempotency-Key: {st} {j}")
    for jid in [x["id"] for x in ok(port, "GET", "/api/v1/jobs", token)["items"]
                if x["state"] not in ("succeeded", "failed", "cancelled")]:
        ok(port, "POST", f"/api/v1/jobs/{jid}/cancel", token, body={})

    # Checkpoints (retention 2 s) and events (4 s) of the ended job are gone.
    if db_count(data, "SELECT count(*) FROM tasks WHERE job_id = ? AND checkpoint_sha IS NOT NULL",
                first) != 0:
        fail("checkpoints of an ended job outlived their retention")
    if db_count(data, "SELECT count(*) FROM events WHERE job_id = ?", first) != 0:
        fail("events of an ended job outlived their retention")

    # DELETE: scopes, then the job and its blobs, then the model.
    st, _ = call(port, "DELETE", f"/api/v1/jobs/{first}", token=token_b)
    if st != 404:
        fail(f"DELETE of another team's job: {st}")
    st, _ = call(port, "DELETE", f"/api/v1/jobs/{first}", token=agent)
    if st != 403:
        fail(f"DELETE with an agent token: {st}")
    mine = {a["sha256"] for a in arts}
    ok(port, "DELETE", f"/api/v1/jobs/{first}", token)
    st, _ = call(port, "GET", f"/api/v1/jobs/{first}", token=token)
    if st != 404:
        fail(f"a deleted job still answers {st}")
    # The other jobs ran the same deterministic training (the same bytes,
    # stored once): the blobs go when no job names them any more.
    ended = [x["id"] for x in ok(port, "GET", "/api/v1/jobs", token)["items"]]
    for jid in ended:
        _wait_job(port, token, jid, ok, fail)
        ok(port, "DELETE", f"/api/v1/jobs/{jid}", token)
    for _ in range(50):
        if not mine & blob_files(data):
            break
        time.sleep(0.2)
    else:
        fail(f"the deleted jobs' blobs were not collected: {mine & blob_files(data)}")
    st, _ = call(port, "DELETE", f"/api/v1/models/{model}", token=token)
    if st != 204:
        fail(f"DELETE of a model no job names: {st}")
    st, _ = call(port, "DELETE", f"/api/v1/models/{model}", token=token)
    if st != 404:
        fail(f"a second DELETE of the model: {st}")
    stop(srv)
    r = subprocess.run([env.server, "check", "--data-dir", data], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"check after GC: {r.stdout} {r.stderr}")
    print(f"retention: ok (a job and {churn['rounds']} upload/delete rounds of the same bytes "
          f"raced a GC pass every second with no grace, nothing lost; idempotency, checkpoint and "
          f"event retention, DELETE for jobs and models with their scopes)")


try:
    main()
finally:
    env.kill_all()
    shutil.rmtree(tmp, ignore_errors=True)
