"""Whole compression jobs through the real processes on loopback.

dnnpress-server runs with one local worker (dnnpress-worker serve, spawned
and restarted by the server); every team action goes through the dnnpress
CLI. Data: LeNet-5 on the first 2048/500 images of the real Fashion-MNIST
(DNNPRESS_LIMIT_TRAIN/TEST, inherited by the local workers), 1-epoch phases,
so the four jobs take about two minutes on 2 cores.

  A. a whole job (train -> compress -> retrain -> export -> compile)
     succeeds: submit --watch exits 0, status/list/report answer (the
     report with its compile section), every artifact downloads and matches
     its sha256, the token file is 0600; the code artifact (code.tar),
     extracted in a clean directory, builds with make and its bench passes
     its reference check; the returned ONNX model, run in ONNX Runtime
     on raw [0, 1] pixels, reaches the report's test accuracy.
  B. (on an uploaded IDX tar instead of the built-in dataset)
     kill -9 of the worker during compress, after a checkpoint upload: the
     server restarts the worker, the lease expires, the task is leased
     again and resumes from the uploaded checkpoint; then SIGTERM of the
     resumed worker: it uploads its checkpoint and releases the task, and
     the next worker resumes. The job succeeds, and the job's events show
     every compress epoch exactly once and the second attempt continuing
     after the checkpoint's epoch: finished epochs were not redone.
  E. a deterministic input error (a LeNet-5 checkpoint on 3x32x32 images)
     fails the job after one attempt, with the engine's message.
  D. cancel during compress: the heartbeat answer stops the engine, the job
     is cancelled, watch exits 1, and the worker takes the next job.
  C. kill -9 of the server mid-job: its local worker, busy in compress,
     exits within seconds; restart on the same data: the job still
     succeeds (the CLI's watch reconnects), and every job is there. Then
     SIGTERM of the server: no local worker outlives it.
"""
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build/release"
SERVER = os.path.join(BUILD, "dnnpress-server")
CLI = os.path.join(BUILD, "dnnpress")
ADMIN = "e2e-client-admin-token-0123456789"
LEASE_S = 3
SPEC = {"admm": {"iters": 3, "epochs_per_iter": 1, "rho": 1e-3}, "retrain": {"epochs": 1},
        "layers": [{"match": "conv*", "prune": {"scheme": "irregular", "rate": 4}},
                   {"match": "fc*", "prune": {"scheme": "irregular", "rate": 10}}]}

tmp = tempfile.mkdtemp(prefix="dp-job-e2e-")
groups = []  # process groups started here, killed at the end


def fail(msg):
    print("job_e2e: FAIL: " + msg, flush=True)
    for log in sorted(os.listdir(tmp)):
        if log.endswith(".log"):
            print("---- %s (tail) ----" % log)
            with open(os.path.join(tmp, log), errors="replace") as f:
                print("".join(f.readlines()[-40:]))
    cleanup()
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def ok(msg):
    print("job_e2e: ok: " + msg, flush=True)


def cleanup():
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if os.environ.get("DP_E2E_KEEP"):
        print("job_e2e: kept %s" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def children(pid):
    """Pids whose parent is pid (the server's local workers)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def alive(pid):
    """Whether pid runs (an exited process that nobody reaped is a zombie: not alive)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Server:
    def __init__(self, data_dir, port):
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        log = open(os.path.join(tmp, "server-%d.log" % time.monotonic_ns()), "ab")
        env = dict(os.environ, DNNPRESS_ADMIN_TOKEN=ADMIN, DNNPRESS_LIMIT_TRAIN="2048",
                   DNNPRESS_LIMIT_TEST="500", OMP_NUM_THREADS="2")
        # A session of its own: the server and its workers form one process
        # group, which cleanup() kills even if a test failed half-way.
        self.proc = subprocess.Popen(
            [SERVER, "--listen", "127.0.0.1:%d" % port, "--data-dir", data_dir,
             "--local-workers", "1", "--lease-s", str(LEASE_S), "--backoff-ms", "50"],
            stdout=log, stderr=log, env=env, start_new_session=True)
        groups.append(self.proc.pid)
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                if self.req("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        fail("server did not start")

    def req(self, method, path, body=None, token=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {"Authorization": "Bearer " + token} if token else {}
        data = None
        if body is not None:
            data = json.dumps(body)
            h["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        payload = r.read()
        c.close()
        return r.status, (json.loads(payload) if payload[:1] in (b"{", b"[") else payload)


def cli_env():
    """The CLI's environment: the test's config file, nothing from the caller's."""
    env = dict(os.environ, DNNPRESS_CONFIG=os.path.join(tmp, "cli", "config.json"))
    env.pop("DNNPRESS_TOKEN", None)
    env.pop("DNNPRESS_SERVER", None)
    return env


def cli(*args, expect=0, env_extra=None):
    env = cli_env()
    env.update(env_extra or {})
    p = subprocess.run([CLI] + list(args), capture_output=True, text=True, env=env, timeout=600)
    check("Sanitizer" not in p.stderr and "runtime error:" not in p.stderr,
          "dnnpress %s: sanitizer report:\n%s" % (" ".join(args), p.stderr[-3000:]))
    if expect is not None and p.returncode != expect:
        fail("dnnpress %s exited %d, expected %d\nstdout: %s\nstderr: %s"
             % (" ".join(args), p.returncode, expect, p.stdout[-2000:], p.stderr[-2000:]))
    return p


def watch_events(job):
    """Starts `dnnpress --json watch JOB` (one JSON event per line)."""
    return subprocess.Popen([CLI, "--json", "watch", job], stdout=subprocess.PIPE,
                            stderr=open(os.path.join(tmp, "watch-%s.log" % job), "ab"),
                            text=True, env=cli_env())


def read_until(proc, pred, timeout, what):
    """Reads watch lines until pred(event) is true; returns the lines read."""
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            fail("watch ended before %s (events: %s)" % (what, seen[-5:]))
        ev = json.loads(line)
        seen.append(ev)
        if pred(ev):
            return seen
    fail("no %s within %ds" % (what, timeout))


def finish_watch(proc, seen, timeout=300):
    for line in proc.stdout:
        seen.append(json.loads(line))
    rc = proc.wait(timeout=timeout)
    return rc, seen


def job_doc(name, model, dataset):
    return {"name": name, "model_id": model, "dataset_id": dataset,
            "pretrain": {"epochs": 1, "lr": 0.01, "batch": 64, "seed": 1},
            "spec": SPEC, "export": {"format": "onnx"}, "max_attempts": 4}


def job_file(name, model, dataset):
    """Writes job_doc(name, ...) as tmp/NAME.json for `dnnpress submit`; returns its path."""
    path = os.path.join(tmp, name + ".json")
    with open(path, "w") as f:
        json.dump(job_doc(name, model, dataset), f)
    return path


def compress_epoch(ev):
    """A watch event of an epoch of the compress task."""
    return ev.get("event") == "epoch" and ev["data"].get("task") == "compress"


def main():
    data = os.path.join(tmp, "data")
    port = free_port()
    s = Server(data, port)
    st, team = s.req("POST", "/api/v1/teams", {"name": "e2e-client"}, ADMIN)
    check(st == 201, "create team: %s %s" % (st, team))
    st, tok = s.req("POST", "/api/v1/tokens", {"team_id": team["id"], "scope": "team",
                                               "name": "cli"}, ADMIN)
    check(st == 201, "team token: %s %s" % (st, tok))

    # -- login stores the token 0600; a wrong token is exit 3, no server exit 5
    cli("login", "--server", "http://127.0.0.1:%d" % free_port(), "--token", "x", expect=5)
    cli("login", "--server", s.url, "--token", "not-a-token", expect=3)
    cli("login", "--server", s.url, "--token", tok["token"])
    mode = stat.S_IMODE(os.stat(os.path.join(tmp, "cli", "config.json")).st_mode)
    check(mode == 0o600, "config file mode %o" % mode)
    cli("status", "job_doesnotexist", expect=4)
    cli("submit", "/nonexistent.json", expect=2)
    ok("login: token stored with mode 0600; exit codes 2 (usage), 3 (auth), 4 (not found), "
       "5 (unreachable)")

    model = cli("upload", "model", "--arch", "lenet5", "--name", "lenet5").stdout.strip()
    dataset = cli("upload", "dataset", "--builtin", "fashion-mnist").stdout.strip()
    check(model.startswith("mdl_") and dataset.startswith("dst_"), "ids %s %s" % (model, dataset))
    bad = dict(job_doc("bad", model, dataset), spec={"layers": [{"match": "*", "prune":
                                                                  {"scheme": "irregular", "rate": 0.5}}]})
    with open(os.path.join(tmp, "bad.json"), "w") as f:
        json.dump(bad, f)
    p = cli("submit", os.path.join(tmp, "bad.json"), expect=7)
    check("rate" in p.stderr, "a bad spec names the field: %s" % p.stderr)
    # The same Fashion-MNIST files as an uploaded IDX tar: job B fetches it by
    # sha256 into the worker's cache and extracts it for each task.
    tar = os.path.join(tmp, "fmnist.tar")
    with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as t:
        for n in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                  "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            t.add("/usr/share/datasets/fashion-mnist/" + n, arcname=n)
    tar_dataset = cli("upload", "dataset", tar, "--format", "idx").stdout.strip()
    check(tar_dataset.startswith("dst_"), "tar dataset id %s" % tar_dataset)
    ok("upload model/dataset (built-in and a %d MB IDX tar); a bad spec is refused (exit 7) "
       "naming the field" % (os.path.getsize(tar) >> 20))

    # -- E: a deterministic input error fails the task at its first attempt:
    # a LeNet-5 checkpoint (1x28x28 inputs) on an NPY dataset of 3x32x32
    # images, no pretraining: compress cannot evaluate it, and another
    # attempt would fail the same way.
    t0 = time.time()
    l5 = os.path.join(tmp, "l5.safetensors")
    subprocess.run([os.path.join(BUILD, "dnnpress-worker"), "train", "--model", "lenet5", "--data",
                    "idx:/usr/share/datasets/fashion-mnist", "--limit-train", "256",
                    "--limit-test", "64", "--epochs", "1", "--threads", "2", "--quiet", "--out",
                    l5], check=True, capture_output=True, timeout=300)
    npy_dir = os.path.join(tmp, "npy")
    os.makedirs(npy_dir)
    rs = np.random.RandomState(5)
    for split, n in (("train", 128), ("test", 32)):
        np.save(os.path.join(npy_dir, "x_%s.npy" % split),
                rs.randint(0, 256, (n, 3, 32, 32)).astype(np.uint8))
        np.save(os.path.join(npy_dir, "y_%s.npy" % split), (np.arange(n) % 10).astype(np.int64))
    npy_tar = os.path.join(tmp, "npy.tar")
    with tarfile.open(npy_tar, "w", format=tarfile.USTAR_FORMAT) as t:
        for n in sorted(os.listdir(npy_dir)):
            t.add(os.path.join(npy_dir, n), arcname=n)
    l5_id = cli("upload", "model", l5, "--name", "l5").stdout.strip()
    rgb = cli("upload", "dataset", npy_tar, "--format", "npy").stdout.strip()
    doc = job_doc("job-e", l5_id, rgb)
    del doc["pretrain"]
    e_json = os.path.join(tmp, "job-e.json")
    with open(e_json, "w") as f:
        json.dump(doc, f)
    p = cli("submit", e_json, "--watch", expect=1)
    job_e = p.stdout.splitlines()[0].strip()
    status = json.loads(cli("--json", "status", job_e).stdout)
    comp = [t for t in status["tasks"] if t["type"] == "compress"][0]
    check(status["state"] == "failed" and comp["attempts"] == 1,
          "job E: a shape error is not retried: %s" % status)
    check("3x32x32" in json.dumps(comp), "job E: the engine's message reaches the team: %s" % comp)
    ok("job E: a model the dataset cannot feed failed after 1 attempt in %.0fs with the engine's "
       "message" % (time.time() - t0))

    # -- A: a whole job
    t0 = time.time()
    # Job A also compiles its model (portable C, tuned for 2 seconds): the
    # chain gains a compile task after export, whose code artifact must
    # build and pass its own reference check in a clean directory.
    a_json = os.path.join(tmp, "job-a.json")
    with open(a_json, "w") as f:
        json.dump(dict(job_doc("job-a", model, dataset),
                       compile={"target": "portable", "tune_s": 2}), f)
    p = cli("submit", a_json, "--watch", "--idempotency-key", "job-a")
    job_a = p.stdout.splitlines()[0].strip()
    check("job %s succeeded" % job_a in p.stdout, "watch output: %s" % p.stdout[-1500:])
    check("compress" in p.stdout and "epoch" in p.stdout, "progress lines: %s" % p.stdout[-800:])
    again = cli("submit", a_json, "--idempotency-key", "job-a").stdout.strip()
    check(again == job_a, "the same Idempotency-Key gives the same job (%s, %s)" % (again, job_a))
    status = json.loads(cli("--json", "status", job_a).stdout)
    states = {t["type"]: t["state"] for t in status["tasks"]}
    check(states == {"train": "succeeded", "compress": "succeeded", "retrain": "succeeded",
                     "export": "succeeded", "compile": "succeeded"}, "task states %s" % states)
    human = cli("report", job_a).stdout
    check("accuracy" in human and "storage" in human, "report summary: %s" % human)
    check("compiled" in human and "portable" in human and "latency" in human,
          "report shows the compile section: %s" % human)
    report = json.loads(cli("--json", "report", job_a).stdout)
    compiled = report.get("compile") or {}
    check(compiled.get("target") == "portable" and compiled["latency_ms"]["mean"] > 0
          and compiled["max_rel_err"] <= 1e-4 and compiled["bundle"]["weights_bytes"] > 0
          and sum(compiled["formats"].values()) > 0,
          "compile report: %s" % json.dumps(compiled)[:800])
    sched = compiled.get("schedule") or {}
    check(compiled.get("tune_s") == 2 and sched.get("target") == "portable"
          and sched.get("threads", 0) >= 1 and len(sched.get("paths", [])) == 1,
          "compile report's tuned schedule: %s" % json.dumps(sched)[:400])
    fc1 = [l for l in report["layers"] if l["name"] == "fc1"][0]
    check(fc1["nonzeros"] == round(fc1["params"] / 10), "fc1 keeps 1/10: %s" % fc1["nonzeros"])
    dl = os.path.join(tmp, "dl")
    files = json.loads(cli("--json", "download", job_a, "--dir", dl).stdout)["files"]
    kinds = sorted(f["kind"] for f in files)
    for f in files:
        with open(f["path"], "rb") as fh:
            check(hashlib.sha256(fh.read()).hexdigest() == f["sha256"], "sha256 of %s" % f["path"])
    for want in ("model.safetensors", "report.json", "model.onnx", "code.tar",
                 "compile_report.json"):
        check(os.path.exists(os.path.join(dl, want)), "%s downloaded (%s)" % (want, kinds))
    # The bundle, as a user gets it: extracted in a clean directory, built
    # with its own Makefile, and its bench's reference check passes.
    t_build = time.time()
    clean = tempfile.mkdtemp(prefix="dp-code-", dir=tmp)
    with tarfile.open(os.path.join(dl, "code.tar")) as t:
        names = t.getnames()
        check(all(m.isreg() and "/" not in m.name for m in t.getmembers()),
              "code.tar holds plain files only: %s" % names)
        t.extractall(clean)
    check({"model.h", "model.c", "weights.bin", "reference.bin", "bench.c",
           "Makefile"} <= set(names), "code.tar members: %s" % names)
    p = subprocess.run(["make", "-s"], cwd=clean, capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, "make in the extracted bundle: %s" % p.stderr[-2000:])
    p = subprocess.run(["./bench", "--runs", "1"], cwd=clean, capture_output=True, text=True,
                       timeout=60)
    check(p.returncode == 0, "bench --runs 1 exit %d: %s" % (p.returncode, p.stderr[-2000:]))
    bench = json.loads(p.stdout.strip().splitlines()[-1])
    check(bench["max_rel_err"] <= 1e-4, "bench reference check: %s" % bench)
    build_s = time.time() - t_build
    # The returned ONNX model carries the input normalisation the engine
    # used (issue 17): ONNX Runtime on raw [0, 1] pixels of the 500 test
    # images the job evaluated on reaches the report's test accuracy (one
    # image either way for float rounding at a tie), and the report says
    # what the normalisation is.
    norm = report.get("normalization") or {}
    check(len(norm.get("mean", [])) == 1 and len(norm.get("std", [])) == 1
          and "mean" in human and "std" in human, "report states the normalisation: %s" % norm)
    with open(os.path.join(tmp, "report_a.json"), "w") as f:
        json.dump(report, f)
    p = subprocess.run(["/usr/bin/python3", os.path.join(os.path.dirname(os.path.abspath(
        __file__)), "..", "ort", "accuracy.py"), os.path.join(dl, "model.onnx"), "500",
        os.path.join(tmp, "report_a.json")], capture_output=True, text=True, timeout=300)
    ort_line = (p.stdout + p.stderr).strip()
    check(p.returncode == 0, "the returned ONNX model in ONNX Runtime: %s" % ort_line)
    listed = cli("list").stdout
    check(job_a in listed and "succeeded" in listed, "list: %s" % listed)
    # The compressed model goes back in as a model of its own (a streamed
    # upload), and one artifact downloads by its sha256.
    up = json.loads(cli("--json", "upload", "model", os.path.join(dl, "model.safetensors"),
                        "--name", "lenet5-compressed").stdout)
    check(up["format"] == "safetensors" and up["sha256"] == status["outputs"]["model"],
          "re-uploaded model: %s" % up)
    one = os.path.join(tmp, "one.json")
    cli("download", "--artifact", status["outputs"]["report"], "--out", one)
    with open(one, "rb") as fh:
        check(hashlib.sha256(fh.read()).hexdigest() == status["outputs"]["report"], "artifact")
    cli("download", "--artifact", "0" * 64, "--out", one + ".x", expect=4)
    check(not os.path.exists(one + ".x") and not os.path.exists(one + ".x.part"),
          "a failed download leaves no file")
    ok("job A: train -> compress -> retrain -> export succeeded in %.0fs; report %.2f%% -> %.2f%%, "
       "%d artifacts downloaded and verified" % (time.time() - t0,
                                                  100 * report["dense_test_accuracy"],
                                                  100 * report["final_test_accuracy"], len(files)))
    ok("job A: the returned model.onnx: %s (normalisation mean %.4f std %.4f travels in it)"
       % (ort_line[4:], norm["mean"][0], norm["std"][0]))
    ok("job A: compile (portable) measured %.3f ms on the worker; code.tar (%d files) built "
       "and passed its reference check in a clean directory (%.1fs)"
       % (compiled["latency_ms"]["mean"], len(names), build_s))

    # -- B: kill -9 of the worker during compress
    t0 = time.time()
    job_b = cli("submit", job_file("job-b", model, tar_dataset)).stdout.strip()
    w = watch_events(job_b)

    def compress_ckpt(ev):
        d = ev.get("data") or {}
        return (ev.get("event") == "log" and d.get("task") == "compress"
                and d.get("kind") == "checkpoint" and d.get("checkpoint_epoch", 0) >= 1)
    seen = read_until(w, compress_ckpt, 180, "a compress checkpoint upload")
    workers = children(s.proc.pid)
    check(len(workers) == 1, "one local worker: %s" % workers)
    os.kill(workers[0], signal.SIGKILL)
    # The restarted worker resumes; once it has uploaded a checkpoint of its
    # own, SIGTERM: it stops at the next step, uploads, releases, exits, and
    # the worker the server starts next resumes again.
    seen += read_until(w, lambda ev: compress_ckpt(ev) and ev["data"]["attempt"] >= 2, 180,
                       "a checkpoint upload of the resumed compress")
    workers = children(s.proc.pid)
    check(len(workers) == 1, "one local worker after the restart: %s" % workers)
    os.kill(workers[0], signal.SIGTERM)
    rc, seen = finish_watch(w, seen)
    check(rc == 0, "job B ended with watch exit %d: %s" % (rc, seen[-3:]))
    epochs = [(e["data"]["attempt"], e["data"]["epoch"]) for e in seen if compress_epoch(e)]
    ckpts = [e["data"]["checkpoint_epoch"] for e in seen if compress_ckpt(e)
             and e["data"]["attempt"] == 1]
    first = [ep for ep in epochs if ep[0] == 1]
    second = [ep for ep in epochs if ep[0] >= 2]
    check(second, "compress ran a second attempt after kill -9: %s" % epochs)
    resumed_at = second[0][1]
    check(resumed_at == max(ckpts) + 1 or (resumed_at > max(ckpts) and
                                           resumed_at <= max(e for _, e in first) + 1),
          "attempt 2 starts right after the uploaded checkpoint (checkpoints %s, epochs %s)"
          % (ckpts, epochs))
    check(all(e > max(ckpts) for _, e in second),
          "no checkpointed epoch was redone: %s (checkpoints %s)" % (epochs, ckpts))
    numbers = [e for _, e in epochs]
    check(numbers == list(range(1, SPEC["admm"]["iters"] + 1)),
          "every compress epoch finished exactly once across kill -9 and SIGTERM: %s" % epochs)
    status = json.loads(cli("--json", "status", job_b).stdout)
    comp = [t for t in status["tasks"] if t["type"] == "compress"][0]
    check(comp["attempts"] >= 2 and status["state"] == "succeeded", "job B: %s" % status)
    logs = ""
    for log in os.listdir(tmp):
        if log.startswith("server-"):
            with open(os.path.join(tmp, log), errors="replace") as f:
                logs += f.read()
    check("task %s: released" % comp["id"] in logs, "the SIGTERMed worker released the task")
    ok("job B: worker kill -9 during compress after epoch %d's checkpoint, attempt %d resumed at "
       "epoch %d; SIGTERM of that worker released the task and the next one resumed; epochs "
       "seen %s; succeeded in %.0fs" % (max(ckpts), second[0][0], resumed_at, epochs,
                                        time.time() - t0))

    # -- D: cancel during compress reaches the engine through the heartbeat
    t0 = time.time()
    job_d = cli("submit", job_file("job-d", model, dataset)).stdout.strip()
    w = watch_events(job_d)
    seen = read_until(w, compress_epoch, 180, "compress under way")
    p = cli("cancel", job_d)
    check("cancel" in p.stdout, "cancel answer: %s" % p.stdout)
    rc, seen = finish_watch(w, seen)
    check(rc == 1, "watch of a cancelled job exits 1, got %d" % rc)
    status = json.loads(cli("--json", "status", job_d).stdout)
    check(status["state"] == "cancelled", "job D state %s" % status["state"])
    cli("retry", job_a, expect=6)
    ok("job D: cancelled during compress in %.0fs, watch exit 1; retry of a succeeded job is "
       "exit 6 (409)" % (time.time() - t0))

    # -- C: kill -9 of the server mid-job, restart on the same data. Job C
    # also compiles for the opencl target: the worker builds the bundle and
    # runs its bench on the machine's OpenCL device (PoCL's CPU device).
    t0 = time.time()
    c_json = os.path.join(tmp, "job-c.json")
    with open(c_json, "w") as f:
        json.dump(dict(job_doc("job-c", model, dataset), compile={"target": "opencl"}), f)
    job_c = cli("submit", c_json).stdout.strip()
    w = watch_events(job_c)
    seen = read_until(w, compress_epoch, 180, "compress under way")
    busy = children(s.proc.pid)
    check(len(busy) == 1, "one local worker, in compress: %s" % busy)
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait()
    # The orphaned worker stops its task at the next step, tries its
    # checkpoint and release once, and exits: it never polls on with a
    # token the restarted server revokes, nor holds cache/w0 against the
    # new worker.
    t_kill = time.time()
    deadline = t_kill + 10
    while time.time() < deadline and alive(busy[0]):
        time.sleep(0.05)
    if alive(busy[0]):
        os.kill(busy[0], signal.SIGKILL)
        fail("the busy local worker of a server killed with kill -9 still runs after 10 s")
    orphan_s = time.time() - t_kill
    s = Server(data, port)
    rc, seen = finish_watch(w, seen)
    check(rc == 0, "job C ended with watch exit %d: %s" % (rc, seen[-3:]))
    listed = json.loads(cli("--json", "list").stdout)
    ids = {j["id"]: j["state"] for j in listed["items"]}
    check(ids.get(job_a) == "succeeded" and ids.get(job_b) == "succeeded"
          and ids.get(job_c) == "succeeded" and ids.get(job_d) == "cancelled"
          and ids.get(job_e) == "failed" and len(ids) == 5,
          "after the server restart every job is there and succeeded: %s" % ids)
    human = cli("report", job_c).stdout
    check("accuracy" in human, "report of job C")
    c_comp = json.loads(cli("--json", "report", job_c).stdout).get("compile") or {}
    check(c_comp.get("target") == "opencl" and c_comp["max_rel_err"] <= 1e-4
          and c_comp["latency_ms"]["mean"] > 0 and c_comp["bench"]["target"] == "opencl",
          "job C: opencl compile report: %s" % json.dumps(c_comp)[:800])
    ok("job C: server kill -9 during compress (its worker exited %.1fs later), restarted; the "
       "watch reconnected and the job succeeded in %.0fs, its opencl bundle %.3f ms on the "
       "worker; jobs %s"
       % (orphan_s, time.time() - t0, c_comp["latency_ms"]["mean"], sorted(ids.values())))

    # -- SIGTERM of the server: no local worker outlives it
    workers = children(s.proc.pid)
    check(len(workers) == 1, "one local worker before SIGTERM: %s" % workers)
    s.proc.send_signal(signal.SIGTERM)
    try:
        rc = s.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        fail("the server did not stop within 20 s of SIGTERM")
    check(rc == 0, "server exit status %d after SIGTERM" % rc)
    check(not any(alive(p) for p in workers), "a local worker survived SIGTERM: %s" % workers)
    ok("SIGTERM: the server exited 0 and its local worker with it")

    # Run against sanitizer builds (tests/e2e/job_e2e.sh build/asan), the
    # processes' logs must hold no report.
    for log in os.listdir(tmp):
        if log.endswith(".log"):
            with open(os.path.join(tmp, log), errors="replace") as f:
                text = f.read()
            check("AddressSanitizer" not in text and "runtime error:" not in text
                  and "LeakSanitizer" not in text, "sanitizer report in %s" % log)


try:
    main()
finally:
    cleanup()
print("job_e2e: all passed", flush=True)
