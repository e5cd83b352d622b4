#!/usr/bin/env python3
"""auto.objective "latency" through the service, with tables the service
builds itself (docs/api.md, "Latency tables"):

  1. no device matches spec.auto.device: 422 at submission;
  2. a profiler device is up and the store has no table: the job gains a
     `latency` task on that device, before compress; the device measures
     the table (lenet5 at 3 rates), uploads it, and the job's compress task
     allocates against it; the report's auto section names the table (the
     device, the task that built it, its age); the events show it;
  3. a second job reuses the fresh table: no latency task, an event saying
     so, the report naming the first job's task;
  4. a measurement that fails (bench past its timeout) fails the job with
     the task's log;
  5. scopes: another team's device token cannot read the table, another
     team cannot target the device, a team token cannot call the agent
     route, a device cannot upload under a task that is not its latency
     task.

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
import urllib.parse

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build/release"
ADMIN = "latency-e2e-admin-token-0123456789"
tmp = tempfile.mkdtemp(prefix="dp-latency-e2e-")
procs = []


def stop():
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    shutil.rmtree(tmp, ignore_errors=True)


def fail(msg):
    print("latency_job: FAIL: " + msg)
    for f in sorted(os.listdir(tmp)):
        if f.endswith(".log"):
            with open(os.path.join(tmp, f), errors="replace") as fh:
                print("--- %s\n%s" % (f, fh.read()[-3000:]))
    stop()
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


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


def wait_job(job, tok, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        doc = expect(req("GET", "/api/v1/jobs/" + job, token=tok), 200, "job")
        if doc["state"] in ("succeeded", "failed", "cancelled"):
            return doc
        time.sleep(0.5)
    fail("job %s did not finish in %d s" % (job, timeout))


def events(job, tok):
    """The job's events (the stream ends once the job has)."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    c.request("GET", "/api/v1/jobs/%s/events" % job, headers={"Authorization": "Bearer " + tok})
    r = c.getresponse()
    out, cur = [], {}
    for raw in r:
        line = raw.decode().rstrip("\n")
        if line == "":
            if cur:
                out.append((cur.get("event"), json.loads(cur.get("data", "null"))))
            cur = {}
        elif not line.startswith(":"):
            k, v = line.split(": ", 1)
            cur[k] = v
    c.close()
    return out


def lat_events(evs):
    return [d for (_, d) in evs if isinstance(d, dict) and
            (d.get("kind") == "latency" or (d.get("data") or {}).get("kind") == "latency")]


def main():
    log = open(os.path.join(tmp, "server.log"), "ab")
    env = dict(os.environ, DNNPRESS_ADMIN_TOKEN=ADMIN, DNNPRESS_LIMIT_TRAIN="1024",
               DNNPRESS_LIMIT_TEST="256", OMP_NUM_THREADS="2")
    procs.append(subprocess.Popen(
        [os.path.join(BUILD, "dnnpress-server"), "--listen", "127.0.0.1:%d" % PORT, "--data-dir",
         os.path.join(tmp, "data"), "--local-workers", "1", "--lease-s", "10"], stdout=log,
        stderr=log, env=env, start_new_session=True))
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

    # A small pretrained LeNet-5, uploaded: its sha256 keys the table.
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

    def body(name, scheme, selector, latency=None):
        spec = {"admm": {"iters": 1, "epochs_per_iter": 1}, "retrain": {"epochs": 1},
                "auto": {"rate": 6, "objective": "latency", "device": selector,
                         "search_iters": 2000, "eval_images": 128},
                "layers": [{"match": "*", "prune": {"scheme": scheme}}]}
        b = {"name": name, "model_id": model["id"], "dataset_id": data["id"], "spec": spec,
             "max_attempts": 1, "latency": latency or {"rates": [1, 4, 16], "runs": 5,
                                                        "warmup": 2}}
        return b

    def submit(b, t=tok, status=201):
        return expect(req("POST", "/api/v1/jobs", b, t), status, "submit %s" % b["name"])

    # 1. No device registered that matches: 422, saying which field.
    no = submit(body("none", "irregular", {"kind": "board"}), status=422)
    check("auto.device" in json.dumps(no), "the 422 names spec.auto.device: %r" % no)

    def profiler(name, token):
        plog = open(os.path.join(tmp, "profiler-%s.log" % name), "ab")
        p = subprocess.Popen(
            [os.path.abspath(os.path.join(BUILD, "dnnpress-worker")), "serve", "--server",
             "http://127.0.0.1:%d" % PORT, "--cache-dir", os.path.join(tmp, "cache-" + name),
             "--profile", "--device-name", name, "--device-labels", "kind=board", "--wait-s",
             "1", "--threads", "1"], stdout=plog, stderr=plog, start_new_session=True,
            env=dict(os.environ, DNNPRESS_TOKEN=token, OMP_NUM_THREADS="1"))
        procs.append(p)
        deadline = time.time() + 30
        while time.time() < deadline:
            items = expect(req("GET", "/api/v1/devices", token=tok), 200, "devices")["items"]
            if any(d["name"] == name for d in items):
                return p
            time.sleep(0.2)
        fail("the profiler %s did not register" % name)

    # 2. A profiler device comes up; no table in the store.
    board1 = profiler("board-1", dev)
    j1 = submit(body("lat-1", "irregular", {"kind": "board"}))
    j1 = wait_job(j1["id"], tok)
    check(j1["state"] == "succeeded", "the first latency job succeeds: %r" % j1)
    lt = [t for t in j1["tasks"] if t["type"] == "latency"]
    comp = [t for t in j1["tasks"] if t["type"] == "compress"]
    check(len(lt) == 1 and lt[0]["state"] == "succeeded",
          "the first job measured the table with one latency task: %r" % j1["tasks"])
    check(comp and comp[0].get("depends_on") == lt[0]["id"],
          "compress waits for the latency task: %r" % j1["tasks"])
    ev1 = lat_events(events(j1["id"], tok))
    check(any("measures it before compress" in json.dumps(e) for e in ev1),
          "the job's events say a table is measured: %r" % ev1)
    check(sum(1 for e in ev1 if "rate " in json.dumps(e)) >= 3,
          "the job's events show the device's progress per rate: %r" % ev1)
    rep1 = expect(req("GET", "/api/v1/jobs/%s/report" % j1["id"], token=tok), 200, "report")
    au = rep1.get("auto", {})
    tb = au.get("table") or {}
    check(au.get("objective") == "latency" and au.get("device") == "board-1"
          and tb.get("task_id") == lt[0]["id"] and tb.get("fresh") is True
          and 0 <= tb.get("age_s", -1) < 600 and tb.get("arch") == sha
          and tb.get("scheme") == "irregular"
          and au.get("predicted_ms", 1e9) <= au.get("budget_ms", 0) * (1 + 1e-9)
          and au.get("dense_ms", 0) > 0,
          "the report names the table the device built, its age, and meets the budget: %r" % au)

    # 3. A second job reuses the fresh table: nothing measured.
    j2 = wait_job(submit(body("lat-2", "irregular", {"name": "board-*"}))["id"], tok)
    check(j2["state"] == "succeeded", "the second latency job succeeds: %r" % j2)
    check(not [t for t in j2["tasks"] if t["type"] == "latency"],
          "the second job has no latency task: %r" % j2["tasks"])
    ev2 = lat_events(events(j2["id"], tok))
    check(any("reused" in json.dumps(e) for e in ev2), "the events say reused: %r" % ev2)
    tb2 = (expect(req("GET", "/api/v1/jobs/%s/report" % j2["id"], token=tok), 200,
                  "report")["auto"].get("table") or {})
    check(tb2.get("task_id") == lt[0]["id"] and tb2.get("age_s", -1) >= 0,
          "the second report names the first job's table: %r" % tb2)

    # 4. A measurement that fails fails the job, with its log.
    j3 = wait_job(submit(body("lat-bad", "column", {"kind": "board"},
                              {"rates": [1, 2], "runs": 100000, "warmup": 0,
                               "timeout_s": 1}))["id"], tok)
    bad = [t for t in j3["tasks"] if t["type"] == "latency"]
    check(j3["state"] == "failed" and bad and bad[0]["state"] in ("failed", "dead")
          and "within 1 s" in (j3.get("error") or ""),
          "a latency task past its timeout fails the job saying so: %s" % json.dumps(j3)[:3000])
    logs = [e for e in lat_events(events(j3["id"], tok)) if "log" in json.dumps(e)
            and "failed" in json.dumps(e)]
    check(logs, "the failed measurement's log is in the job's events")

    # 4b. A device killed mid-measurement: its latency task is re-leased to
    # the other matching device once the lease runs out.
    dev2 = expect(req("POST", "/api/v1/tokens", {"scope": "device", "name": "d2"}, tok), 201,
                  "second device token")["token"]
    profiler("board-2", dev2)
    b4 = body("lat-move", "filter", {"kind": "board"}, {"rates": [1, 2, 4, 8], "runs": 5,
                                                        "warmup": 1})
    b4["max_attempts"] = 3  # an expired lease counts an attempt
    j4 = submit(b4)
    deadline = time.time() + 120
    moved = None
    while time.time() < deadline:
        jv = expect(req("GET", "/api/v1/jobs/" + j4["id"], token=tok), 200, "job")
        t = [t for t in jv["tasks"] if t["type"] == "latency"][0]
        if moved is None and t["state"] == "leased":
            check(t["device_id"] == lt[0]["device_id"], "board-1 measures first: %r" % t)
            os.killpg(board1.pid, signal.SIGKILL)
            board1.wait()
            moved = t["device_id"]
        if moved is not None and t["state"] == "succeeded":
            break
        check(t["state"] in ("queued", "leased", "succeeded"), "the moved task: %r" % t)
        time.sleep(0.3)
    else:
        fail("the latency task was not re-leased and finished: %r" % jv["tasks"])
    check(t["device_id"] != moved and t["attempts"] == 2
          and t["errors"] and t["errors"][0]["kind"] == "lease_expired",
          "the killed device's latency task finished on the other device: %r" % t)
    # The move is what this part checks: the rest of the job is cancelled.
    expect(req("POST", "/api/v1/jobs/%s/cancel" % j4["id"], {}, tok), 202, "cancel")

    # 5. Scopes.
    team_b = expect(req("POST", "/api/v1/teams", {"name": "other"}, ADMIN), 201, "team b")
    tok_b = expect(req("POST", "/api/v1/tokens", {"team_id": team_b["id"], "scope": "team"},
                       ADMIN), 201, "team b token")["token"]
    dev_b = expect(req("POST", "/api/v1/tokens", {"scope": "device", "name": "b"}, tok_b), 201,
                   "team b device token")["token"]
    expect(req("POST", "/agent/v1/register", {"name": "board-b", "capabilities": ["profile",
                                                                                   "latency"],
                                              "labels": {"kind": "board"}}, dev_b), 201,
           "team b registers a device")
    q = "/agent/v1/latency?" + urllib.parse.urlencode(
        {"arch": sha, "scheme": "irregular", "device": json.dumps({"kind": "board"})})
    expect(req("GET", q, token=dev), 200, "team a's device reads its own team's table")
    expect(req("GET", q, token=dev_b), 404, "team b's device cannot read team a's table")
    expect(req("GET", q, token=tok), 403, "a team token cannot call the agent route")
    model_b = expect(req("POST", "/api/v1/models?name=l5&format=safetensors", raw=blob,
                         token=tok_b), 201, "team b model")
    bb = body("b", "irregular", {"name": "board-1"})
    bb["model_id"] = model_b["id"]
    bb["dataset_id"] = expect(req("POST", "/api/v1/datasets", {"name": "f",
                                                               "builtin": "fashion-mnist"},
                                  tok_b), 201, "dataset b")["id"]
    submit(bb, tok_b, 422)  # team a's device does not serve team b
    table = {"arch": sha, "scheme": "irregular", "task": comp[0]["id"],
             "layers": [{"name": "conv1", "rates": [1], "ms": [1.0]}]}
    expect(req("PUT", "/agent/v1/latency", table, dev), 404,
           "a device cannot upload under a task that is not its leased latency task")
    print("latency_job: ok: the device built the table (task %s, %d rates), the report names "
          "it (age %d s), a second job reused it, a failed measurement fails the job, a killed "
          "device's measurement moved, scopes hold" % (lt[0]["id"], 3, tb["age_s"]))
    stop()


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException:
        stop()
        raise
