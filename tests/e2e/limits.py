"""Limits and fairness against the real server (docs/security.md, "Limits").

One server with small limits and two local workers:
  - rate: a team token over its burst is answered 429 rate_limited with
    Retry-After, and passes again after waiting that long; another token of
    the same team has its own bucket; an agent token gets ten times the
    rate; admin tokens are not limited;
  - quotas: the (quota+1)-th active job and the upload that would pass the
    storage quota are 429 quota_exceeded, naming the quota;
  - running tasks: team A, flooding the queue, never holds more leased
    tasks than its quota, and team B's job, submitted after A's, runs on the
    other worker meanwhile and finishes before A's last job;
  - /metrics shows the limits and how many requests each refused.
A second server, without quotas, shows that claims are fair across teams
within a priority: B's job, submitted after three of A's, is leased before
A's second.
"""
import http.client
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
ADMIN = "limits-e2e-admin-token-0123456789"
tmp = tempfile.mkdtemp(prefix="dp-limits-e2e-")
env = Env(BUILD, tmp, ADMIN)


def fail(msg):
    env.fail(msg, "limits")


def ok(port, method, path, token, **kw):
    st, j = call(port, method, path, token=token, **kw)
    if st >= 300:
        fail(f"{method} {path}: {st} {j}")
    return j


def leased_by_team(data):
    con = sqlite3.connect(f"file:{data}/dnnpress.db?mode=ro", uri=True, timeout=10)
    try:
        return dict(con.execute("SELECT j.team_id, count(*) FROM tasks t JOIN jobs j ON "
                                "j.id = t.job_id WHERE t.state = 'leased' GROUP BY j.team_id"))
    finally:
        con.close()


def setup(port, names):
    out = []
    for n in names:
        team = ok(port, "POST", "/api/v1/teams", ADMIN, body={"name": n})["id"]
        tok = ok(port, "POST", "/api/v1/tokens", ADMIN,
                 body={"team_id": team, "scope": "team"})["token"]
        model = ok(port, "POST", "/api/v1/models", tok, body={"name": "m", "arch": "lenet5"})["id"]
        ds = ok(port, "POST", "/api/v1/datasets", tok,
                body={"name": "d", "builtin": "fashion-mnist"})["id"]
        out.append((team, tok, {"name": n, "model_id": model, "dataset_id": ds,
                                "pretrain": {"epochs": 1, "seed": 1},
                                "spec": {"admm": {"iters": 1, "epochs_per_iter": 1},
                                         "retrain": {"epochs": 1},
                                         "layers": [{"match": "*", "prune": {
                                             "scheme": "irregular", "rate": 4}}]},
                                "export": {"format": "onnx"}}))
    return out


def watch_leases(data, stop_ev, seen):
    while not stop_ev.is_set():
        try:
            for team, n in leased_by_team(data).items():
                seen[team] = max(seen.get(team, 0), n)
        except sqlite3.Error:
            pass
        time.sleep(0.05)


def main():
    data = os.path.join(tmp, "data")
    port = free_port()
    srv = env.start_server(data, port, 2, extra=[
        "--rate-limit-rps", "5", "--rate-limit-burst", "10", "--quota-active-jobs", "3",
        "--quota-storage-mb", "1", "--quota-running-tasks", "1"])
    (team_a, tok_a, job_a), (team_b, tok_b, job_b) = setup(port, ["a", "b"])

    # ---- rate ---------------------------------------------------------------
    tok_r = ok(port, "POST", "/api/v1/tokens", ADMIN, body={"team_id": team_b, "scope": "team"})
    tok_r = tok_r["token"]
    codes = [call(port, "GET", "/api/v1/me", token=tok_r)[0] for _ in range(20)]
    if codes.count(429) < 5 or codes[:10] != [200] * 10:
        fail(f"a burst of 20 with a burst limit of 10: {codes}")
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/api/v1/me", headers={"Authorization": f"Bearer {tok_r}"})
    r = c.getresponse()
    body = r.read().decode()
    retry = r.getheader("Retry-After")
    c.close()
    if r.status != 429 or not retry or "rate_limited" not in body or "5 requests per second" \
            not in body:
        fail(f"429 answer: {r.status} {retry} {body}")
    time.sleep(int(retry))
    if call(port, "GET", "/api/v1/me", token=tok_r)[0] != 200:
        fail("still limited after Retry-After")
    if call(port, "GET", "/api/v1/me", token=tok_b)[0] != 200:
        fail("another token of the same team shares the bucket")
    agent = ok(port, "POST", "/api/v1/tokens", ADMIN, body={"team_id": team_b, "scope": "agent"})
    codes = [call(port, "GET", "/api/v1/me", token=agent["token"])[0] for _ in range(60)]
    if codes.count(429) != 0:
        fail(f"an agent token (10x) was limited within 60 requests: {codes}")
    codes = [call(port, "GET", "/metrics", token=ADMIN)[0] for _ in range(40)]
    if set(codes) != {200}:
        fail(f"the admin token was limited: {codes}")

    # ---- storage quota (1 MiB): models of about 250 KB each ---------------------
    mfile = os.path.join(tmp, "m.safetensors")
    r = subprocess.run([os.path.join(BUILD, "dnnpress-worker"), "train", "--model", "lenet5",
                        "--data", "idx:/usr/share/datasets/fashion-mnist", "--limit-train", "64",
                        "--limit-test", "64", "--epochs", "1", "--out", mfile],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"cannot make a model file: {r.stderr[-300:]}")
    mbytes = open(mfile, "rb").read()
    statuses = []
    for i in range(8):
        b = bytearray(mbytes)
        b[-4 - i] ^= 0x01
        st, j = call(port, "POST", f"/api/v1/models?name=q{i}&format=safetensors", token=tok_a,
                     raw=bytes(b))
        statuses.append(st)
        if st == 429:
            if j.get("code") != "quota_exceeded" or "quota of 1 MiB" not in j.get("message", ""):
                fail(f"storage quota answer: {j}")
            break
        time.sleep(0.25)  # stay under the rate limit
    if statuses[-1] != 429 or statuses.count(201) * len(mbytes) > (1 << 20):
        fail(f"uploads of {len(mbytes)} bytes against a 1 MiB quota: {statuses}")

    # ---- active jobs and running tasks ------------------------------------------
    stop_ev = threading.Event()
    seen = {}
    w = threading.Thread(target=watch_leases, args=(data, stop_ev, seen))
    w.start()
    a_jobs = []
    for i in range(3):
        a_jobs.append(ok(port, "POST", "/api/v1/jobs", tok_a, body=dict(job_a, name=f"a{i}"))["id"])
        time.sleep(0.25)
    st, j = call(port, "POST", "/api/v1/jobs", token=tok_a, body=dict(job_a, name="a3"))
    if st != 429 or j.get("code") != "quota_exceeded" or "quota is 3" not in j.get("message", ""):
        fail(f"the 4th active job: {st} {j}")
    b_job = ok(port, "POST", "/api/v1/jobs", tok_b, body=job_b)["id"]
    ends = {}
    for jid, tok in [(b_job, tok_b)] + [(x, tok_a) for x in a_jobs]:
        d = _wait_job(port, tok, jid, ok, fail)
        if d["state"] != "succeeded":
            fail(f"job {jid}: {d['state']} {d.get('error')}")
        ends[jid] = d["finished_at"]
        time.sleep(0.25)
    stop_ev.set()
    w.join()
    if seen.get(team_a, 0) > 1:
        fail(f"team A held {seen[team_a]} leased tasks with a running quota of 1")
    if seen.get(team_b, 0) < 1 or ends[b_job] > max(ends[x] for x in a_jobs):
        fail(f"team B waited behind team A's flood: leases {seen}, ends {ends}")
    metrics = ok(port, "GET", "/metrics", ADMIN, parse=False)
    metrics = metrics.decode() if isinstance(metrics, bytes) else str(metrics)
    for want in ['dnnpress_limit{name="rate_limit_rps"} 5', 'dnnpress_limit{name="quota_active_jobs"} 3',
                 'dnnpress_limit{name="quota_running_tasks"} 1']:
        if want not in metrics:
            fail(f"/metrics lacks {want}")
    for lim in ["rate", "quota_active_jobs", "quota_storage"]:
        line = [x for x in metrics.splitlines() if x.startswith(f'dnnpress_limited_total{{limit="{lim}"}}')]
        if not line or int(line[0].split()[-1]) < 1:
            fail(f"/metrics does not count the {lim} refusals: {line}")
    stop(srv)

    # ---- fairness without quotas -----------------------------------------------
    data2 = os.path.join(tmp, "data2")
    port2 = free_port()
    srv2 = env.start_server(data2, port2, 2, extra=["--rate-limit-rps", "0"])
    (team_a, tok_a, job_a), (team_b, tok_b, job_b) = setup(port2, ["a", "b"])
    a_jobs = [ok(port2, "POST", "/api/v1/jobs", tok_a, body=dict(job_a, name=f"a{i}"))["id"]
              for i in range(3)]
    b_job = ok(port2, "POST", "/api/v1/jobs", tok_b, body=job_b)["id"]
    for jid, tok in [(b_job, tok_b)] + [(x, tok_a) for x in a_jobs]:
        if _wait_job(port2, tok, jid, ok, fail)["state"] != "succeeded":
            fail(f"job {jid} failed")
    con = sqlite3.connect(f"file:{data2}/dnnpress.db?mode=ro", uri=True)
    first = dict(con.execute("SELECT job_id, min(seq) FROM events WHERE type = 'state' AND "
                             "json_extract(data, '$.state') = 'leased' GROUP BY job_id"))
    timeline = list(con.execute(
        "SELECT seq, job_id, json_extract(data, '$.task'), json_extract(data, '$.state') "
        "FROM events WHERE type = 'state' AND json_extract(data, '$.state') IS NOT NULL "
        "ORDER BY seq"))
    con.close()
    if not first or first.get(b_job) is None or first[b_job] > first[a_jobs[2]]:
        fail(f"B's job {b_job}, submitted after A's three {a_jobs}, was leased after A's third: "
             f"{first}; timeline {timeline}")
    stop(srv2)
    print("limits: ok (429 + Retry-After per token, agents x10, admin unlimited; active-job and "
          "storage quotas; running-task quota held while another team ran beside it; claims "
          "fair across teams; limits and refusals in /metrics)")


try:
    main()
finally:
    env.kill_all()
    shutil.rmtree(tmp, ignore_errors=True)
