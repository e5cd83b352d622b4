"""The device farm end to end, on loopback (docs/api.md, "Devices").

Real processes: dnnpress-server with one local worker (train .. compile),
and profiling devices (dnnpress-worker serve --profile) started here with
device tokens. LeNet-5 on the first 512/128 Fashion-MNIST images, 1-epoch
phases.

  A. Two devices with different labels register (one with a team's device
     token, one shared, made by the admin). A job with compile and a
     profile on {"board": "pi"} runs its profile on the pi device and not
     on the other; the report (dnnpress report) has the device table:
     compressed and dense latency, speed-up, and per layer time and share,
     for both bundles; the job's events carry the profile's progress;
     `dnnpress devices` lists both devices.
  B. A job profiled on both devices: the pi device is killed (SIGKILL)
     while it holds its profile task; it reads offline, and its task is
     leased again to the other matching device, which runs both. The job
     succeeds.
  C. A second server without local workers, whose only profiler runs in
     its own network namespace (ip netns, a veth pair with link-local
     addresses: nothing leaves the machine), so registration, download and
     upload cross a real network hop; a plain agent (this script) drives
     the job to its compile and delivers a code bundle that does not
     build: the profile task fails, not retried, with the build log. When
     the namespace cannot be made (no privilege), the profiler runs on
     loopback and the script says so.
"""
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build/release"
SERVER = os.path.join(BUILD, "dnnpress-server")
WORKER = os.path.join(BUILD, "dnnpress-worker")
CLI = os.path.join(BUILD, "dnnpress")
ADMIN = "e2e-farm-admin-token-0123456789"
LEASE_S = 3
SPEC = {"admm": {"iters": 1, "epochs_per_iter": 1, "rho": 1e-3}, "retrain": {"epochs": 1},
        "layers": [{"match": "conv*", "prune": {"scheme": "irregular", "rate": 4}},
                   {"match": "fc*", "prune": {"scheme": "irregular", "rate": 10}}]}
NETNS = "dpfarm%d" % os.getpid()
VETH_HOST, VETH_NS = "dpf%dh" % (os.getpid() % 100000), "dpf%dn" % (os.getpid() % 100000)
HOST_IP, NS_IP = "169.254.77.1", "169.254.77.2"

tmp = tempfile.mkdtemp(prefix="dp-farm-e2e-")
procs = []  # every process started here, killed at the end
netns_made = []


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    if netns_made:
        subprocess.run(["ip", "link", "del", VETH_HOST], capture_output=True)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    if os.environ.get("DP_E2E_KEEP"):
        print("farm_e2e: kept %s" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def fail(msg):
    print("farm_e2e: FAIL: " + msg, flush=True)
    for log in sorted(os.listdir(tmp)):
        if log.endswith(".log"):
            print("---- %s (tail) ----" % log)
            with open(os.path.join(tmp, log), errors="replace") as f:
                print("".join(f.readlines()[-30:]))
    cleanup()
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def ok(msg):
    print("farm_e2e: ok: " + msg, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, name, local_workers, listen_ip="127.0.0.1"):
        self.port = free_port()
        self.ip = listen_ip
        self.url = "http://%s:%d" % (listen_ip, self.port)
        log = open(os.path.join(tmp, "server-%s.log" % name), "ab")
        env = dict(os.environ, DNNPRESS_ADMIN_TOKEN=ADMIN, DNNPRESS_LIMIT_TRAIN="512",
                   DNNPRESS_LIMIT_TEST="128", OMP_NUM_THREADS="2")
        self.proc = subprocess.Popen(
            [SERVER, "--listen", "%s:%d" % (listen_ip, self.port), "--data-dir",
             os.path.join(tmp, "data-" + name), "--local-workers", str(local_workers),
             "--lease-s", str(LEASE_S), "--backoff-ms", "50"],
            stdout=log, stderr=log, env=env)
        procs.append(self.proc)
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                if self.req("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        fail("server %s did not start" % name)

    def req(self, method, path, body=None, token=None, raw=None, timeout=30):
        c = http.client.HTTPConnection(self.ip, self.port, timeout=timeout)
        h = {"Authorization": "Bearer " + token} if token else {}
        data = None
        if body is not None:
            data = json.dumps(body)
            h["Content-Type"] = "application/json"
        if raw is not None:
            data = raw
            h["Content-Type"] = "application/octet-stream"
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        payload = r.read()
        c.close()
        try:
            return r.status, json.loads(payload) if payload[:1] in (b"{", b"[") else payload
        except ValueError:
            return r.status, payload

    def ok(self, method, path, body=None, token=None, status=(200, 201), raw=None):
        st, doc = self.req(method, path, body, token, raw)
        check(st in status, "%s %s: %d %r" % (method, path, st, doc))
        return doc


def profiler(s, name, token, labels, netns=None):
    """Starts `dnnpress-worker serve --profile` for device name."""
    cache = os.path.join(tmp, "cache-" + name)
    log = open(os.path.join(tmp, "profiler-%s.log" % name), "ab")
    cmd = [os.path.abspath(WORKER), "serve", "--server", s.url, "--cache-dir", cache, "--profile",
           "--device-name", name, "--device-labels", labels, "--wait-s", "1", "--threads", "1"]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    p = subprocess.Popen(cmd, stdout=log, stderr=log,
                         env=dict(os.environ, DNNPRESS_TOKEN=token, OMP_NUM_THREADS="1"))
    procs.append(p)
    return p


def devices(s, token):
    return {d["name"]: d for d in s.ok("GET", "/api/v1/devices", token=token)["items"]}


def wait_for(pred, timeout, what, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    fail("no %s within %ds" % (what, timeout))


def job_doc(name, model, dataset, selectors, runs):
    return {"name": name, "model_id": model, "dataset_id": dataset,
            "pretrain": {"epochs": 1, "lr": 0.01, "batch": 64, "seed": 1}, "spec": SPEC,
            "compile": {"target": "portable"}, "max_attempts": 3,
            "profile": {"devices": selectors, "runs": runs, "warmup": 2, "threads": [1]}}


def wait_job(s, tok, jid, timeout=300):
    def done():
        j = s.ok("GET", "/api/v1/jobs/" + jid, token=tok)
        return j if j["state"] in ("succeeded", "failed", "cancelled") else None
    return wait_for(done, timeout, "end of job " + jid, step=0.5)


def cli(s, tok, *args):
    env = dict(os.environ, DNNPRESS_SERVER=s.url, DNNPRESS_TOKEN=tok,
               DNNPRESS_CONFIG=os.path.join(tmp, "nonexistent.json"))
    p = subprocess.run([CLI] + list(args), capture_output=True, text=True, env=env, timeout=60)
    check(p.returncode == 0, "dnnpress %s: %d %s" % (" ".join(args), p.returncode, p.stderr))
    return p.stdout


def read_events(s, tok, jid):
    c = http.client.HTTPConnection(s.ip, s.port, timeout=30)
    c.request("GET", "/api/v1/jobs/%s/events" % jid, headers={"Authorization": "Bearer " + tok})
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


def part_a_b(s):
    team = s.ok("POST", "/api/v1/teams", {"name": "farm"}, ADMIN)
    tok = s.ok("POST", "/api/v1/tokens", {"team_id": team["id"], "scope": "team"}, ADMIN)["token"]
    pi_tok = s.ok("POST", "/api/v1/tokens", {"scope": "device", "name": "pi-1"}, tok)["token"]
    x86_tok = s.ok("POST", "/api/v1/tokens", {"scope": "device", "team_id": None,
                                              "name": "x86-1"}, ADMIN)["token"]
    # The wrong token for the mode is refused at registration, and the worker
    # stops instead of retrying what will be refused again.
    agent_tok = s.ok("POST", "/api/v1/tokens", {"team_id": team["id"], "scope": "agent"},
                     ADMIN)["token"]
    for token, extra, why in ((agent_tok, ["--profile", "--device-name", "z", "--device-labels",
                                           "k=v"], "only a device token registers labels"),
                              (pi_tok, [], "takes [\"profile\"] or [\"profile\", \"latency\"] only")):
        p = subprocess.run([WORKER, "serve", "--server", s.url, "--cache-dir",
                            os.path.join(tmp, "cache-refused"), "--wait-s", "1"] + extra,
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, DNNPRESS_TOKEN=token))
        check(p.returncode == 2 and "register refused" in p.stderr and why in p.stderr,
              "a worker whose registration is refused exits: %d %s" % (p.returncode, p.stderr))
    pi = profiler(s, "pi-1", pi_tok, "board=pi,site=lab")
    profiler(s, "x86-1", x86_tok, "board=x86")
    devs = wait_for(lambda: (lambda d: d if len(d) == 2 else None)(devices(s, tok)), 15,
                    "two registered devices")
    desc = devs["pi-1"]["description"]
    check(devs["pi-1"]["labels"] == {"board": "pi", "site": "lab"} and desc.get("threads", 0) >= 1
          and desc.get("memory_bytes", 0) > 0 and desc.get("kernel") and "isa" in desc
          and "opencl" in desc and devs["x86-1"]["shared"] is True,
          "device descriptions: %r" % devs)
    listed = cli(s, tok, "devices")
    check("pi-1" in listed and "x86-1" in listed and "board=pi" in listed, "devices: " + listed)
    ok("a worker with the wrong token for its mode exits at registration (2); two profilers "
       "registered (pi-1: team token, x86-1: shared) with detected descriptions "
       "(cpu %r, isa %s, %d threads)" % (desc.get("cpu"), desc.get("isa"), desc["threads"]))

    model = s.ok("POST", "/api/v1/models", {"name": "lenet5", "arch": "lenet5"}, tok)["id"]
    dataset = s.ok("POST", "/api/v1/datasets", {"name": "fm", "builtin": "fashion-mnist"},
                   tok)["id"]
    t0 = time.time()
    j = s.ok("POST", "/api/v1/jobs", job_doc("pi-only", model, dataset, [{"board": "pi"}], 30),
             tok)
    ids = {n: d["id"] for n, d in devs.items()}
    prof = [t for t in j["tasks"] if t["type"] == "profile"]
    check([t["device_id"] for t in prof] == [ids["pi-1"]], "one profile task, on pi-1: %r" % prof)
    j = wait_job(s, tok, j["id"])
    check(j["state"] == "succeeded", "job A: %r" % j)
    devs = devices(s, tok)
    check(devs["pi-1"]["tasks_run"] == 1 and devs["x86-1"]["tasks_run"] == 0,
          "the profile ran on pi-1 only: %r" % {n: d["tasks_run"] for n, d in devs.items()})
    rep = json.loads(cli(s, tok, "--json", "report", j["id"]))
    check(len(rep.get("devices", [])) == 1, "report devices: %r" % rep.get("devices"))
    p = rep["devices"][0]
    r0 = p["results"][0]
    cl, dl = r0["compressed"]["layers"], r0["dense"]["layers"]
    check(p["device"]["name"] == "pi-1" and p["device"]["id"] == ids["pi-1"]
          and r0["compressed"]["latency_ms"]["p50"] > 0 and r0["dense"]["latency_ms"]["p50"] > 0
          and r0["speedup"] > 0 and len(cl) >= 4 and len(cl) == len(dl)
          and all(l["ms"] >= 0 and 0 <= l["share"] <= 1 for l in cl + dl)
          and abs(sum(l["share"] for l in cl) - 1) < 1e-6
          and r0["compressed"]["max_rel_err"] <= 1e-4
          and r0["compressed"]["peak_rss_kb"] > 0 and r0["dense"]["peak_rss_kb"] > 0
          and p["binary_bytes"]["compressed"] > 0 and p["binary_bytes"]["dense"] > 0,
          "profile result: %s" % json.dumps(p)[:1500])
    human = cli(s, tok, "report", j["id"])
    check("speed-up" in human and "pi-1" in human and cl[0]["name"][:18] in human,
          "report shows the device table: " + human)
    evs = [d for e, d in read_events(s, tok, j["id"])
           if e == "log" and isinstance(d, dict) and d.get("kind") == "profile"]
    steps = [e.get("step") for e in evs]
    check(steps[:1] == ["compressed"] and "dense" in steps and steps[-1] == "done",
          "profile progress events: %r" % evs)
    ok("job A in %.0fs: profiled on pi-1 only (x86-1 ran nothing): compressed %.3f ms, dense "
       "%.3f ms p50, %.2fx; %d layers with time and share for both bundles; report table, "
       "progress events" % (time.time() - t0, r0["compressed"]["latency_ms"]["p50"],
                            r0["dense"]["latency_ms"]["p50"], r0["speedup"], len(cl)))

    # B: pi-1 dies holding its profile task; x86-1 takes it over.
    t0 = time.time()
    j = s.ok("POST", "/api/v1/jobs", job_doc("both", model, dataset, [{"name": "*-1"}], 4000),
             tok)
    mine = [t["id"] for t in j["tasks"] if t["type"] == "profile" and
            t["device_id"] == ids["pi-1"]]
    check(len(mine) == 1 and len([t for t in j["tasks"] if t["type"] == "profile"]) == 2,
          "one profile task per matching device: %r" % j["tasks"])

    def pi_leased():
        jv = s.ok("GET", "/api/v1/jobs/" + j["id"], token=tok)
        t = [t for t in jv["tasks"] if t["id"] == mine[0]][0]
        return t["state"] == "leased" and t["device_id"] == ids["pi-1"]
    wait_for(pi_leased, 300, "pi-1 leasing its profile task")
    time.sleep(0.5)
    pi.kill()
    pi.wait()
    wait_for(lambda: devices(s, tok)["pi-1"]["state"] == "offline", 3 * LEASE_S + 10,
             "pi-1 offline")
    j = wait_job(s, tok, j["id"])
    check(j["state"] == "succeeded", "job B: %r" % j)
    moved = [t for t in j["tasks"] if t["id"] == mine[0]][0]
    check(moved["device_id"] == ids["x86-1"] and moved["attempts"] == 2
          and moved["errors"][0]["kind"] == "lease_expired", "the re-leased task: %r" % moved)
    rep = json.loads(cli(s, tok, "--json", "report", j["id"]))
    names = sorted(p["device"]["name"] for p in rep["devices"])
    check(names == ["x86-1", "x86-1"], "both profiles ran on x86-1: %r" % names)
    ok("job B in %.0fs: pi-1 killed holding its profile task -> offline; the task re-leased to "
       "x86-1, which ran both; job succeeded" % (time.time() - t0))
    return rep


def make_netns():
    """A network namespace joined to this one by a veth pair; False when not permitted."""
    steps = [["ip", "netns", "add", NETNS],
             ["ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NS],
             ["ip", "link", "set", VETH_NS, "netns", NETNS],
             ["ip", "addr", "add", HOST_IP + "/30", "dev", VETH_HOST],
             ["ip", "link", "set", VETH_HOST, "up"],
             ["ip", "netns", "exec", NETNS, "ip", "addr", "add", NS_IP + "/30", "dev", VETH_NS],
             ["ip", "netns", "exec", NETNS, "ip", "link", "set", VETH_NS, "up"],
             ["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"]]
    if shutil.which("ip") is None:
        print("farm_e2e: note: no `ip` command (iproute2): no network namespace", flush=True)
        return False
    for i, st in enumerate(steps):
        p = subprocess.run(st, capture_output=True, text=True)
        if i == 0 and p.returncode == 0:
            netns_made.append(1)
        if p.returncode != 0:
            print("farm_e2e: note: %s: %s" % (" ".join(st), p.stderr.strip()), flush=True)
            return False
    return True


def part_c(onnx_bytes):
    ns = make_netns()
    s = Server("c", 0, listen_ip=HOST_IP if ns else "127.0.0.1")
    team = s.ok("POST", "/api/v1/teams", {"name": "farm-c"}, ADMIN)
    tok = s.ok("POST", "/api/v1/tokens", {"team_id": team["id"], "scope": "team"}, ADMIN)["token"]
    dev_tok = s.ok("POST", "/api/v1/tokens", {"scope": "device", "name": "ns"}, tok)["token"]
    agent = s.ok("POST", "/api/v1/tokens", {"team_id": team["id"], "scope": "agent"},
                 ADMIN)["token"]
    profiler(s, "ns-1", dev_tok, "net=veth", netns=NETNS if ns else None)
    wait_for(lambda: "ns-1" in devices(s, tok), 15, "the namespaced device")
    model = s.ok("POST", "/api/v1/models?name=l5&format=onnx", token=tok, raw=onnx_bytes)["id"]
    dataset = s.ok("POST", "/api/v1/datasets", {"name": "fm", "builtin": "fashion-mnist"},
                   tok)["id"]
    j = s.ok("POST", "/api/v1/jobs", {
        "model_id": model, "dataset_id": dataset, "spec": SPEC, "compile": {"target": "portable"},
        "profile": {"devices": [{"net": "veth"}], "runs": 5}}, tok)
    caps = ["compress", "retrain", "export", "compile"]
    w = s.ok("POST", "/agent/v1/register", {"name": "driver", "capabilities": caps},
             agent)["worker_id"]
    broken = io.BytesIO()
    with tarfile.open(fileobj=broken, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, text in (("Makefile", b"all:\n\tcc -c model.c -o model.o\n"),
                           ("model.c", b"int broken( { return 0; }\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            t.addfile(info, io.BytesIO(text))
    outs = {"compress": ("model", "report"), "retrain": ("model", "report"), "export": ("onnx",),
            "compile": ("code", "compile_report")}
    for _ in range(4):
        t = s.ok("POST", "/agent/v1/claim", {"worker_id": w, "capabilities": caps, "wait_s": 5},
                 agent)["task"]
        done = {}
        for kind in outs[t["type"]]:
            body = broken.getvalue() if kind == "code" else b'{"fake": 1}'
            done[kind] = s.ok("PUT", "/agent/v1/tasks/%s/artifacts/%s?fence=%d" % (
                t["id"], kind, t["fence"]), token=agent, raw=body)["sha256"]
        s.ok("POST", "/agent/v1/tasks/%s/complete" % t["id"], {"fence": t["fence"],
                                                               "outputs": done}, agent)
    j = wait_job(s, tok, j["id"], timeout=120)
    prof = [t for t in j["tasks"] if t["type"] == "profile"][0]
    msg = prof["errors"][0]["message"] if prof["errors"] else ""
    check(j["state"] == "failed" and prof["state"] == "failed" and prof["attempts"] == 1
          and "does not build" in msg and "int broken(" in msg,
          "a bundle that does not build fails its profile task with the log: %r" % prof)
    failed = [d for e, d in read_events(s, tok, j["id"]) if e == "log" and isinstance(d, dict)
              and d.get("kind") == "profile" and d.get("step") == "failed"]
    check(len(failed) == 1 and "model.c:1" in failed[0]["log"]
          and "does not build" in failed[0]["message"],
          "the job's events carry the build log: %r" % failed)
    ok("job C: the profiler %s registered, downloaded the bundle and reported its failure; the "
       "task failed after 1 attempt with the build log: %s"
       % ("in its own network namespace (veth %s <-> %s)" % (NS_IP, HOST_IP) if ns
          else "on loopback (no network namespace here)", msg[:120]))


def main():
    for b in (SERVER, WORKER, CLI):
        check(os.access(b, os.X_OK), "%s is not built" % b)
    s = Server("ab", 1)
    part_a_b(s)
    for p in procs:  # the profilers of A and B
        if p is not s.proc and p.poll() is None:
            p.kill()
            p.wait()
    # A small LeNet-5 ONNX as part C's dense model.
    onnx = os.path.join(tmp, "l5.onnx")
    l5 = os.path.join(tmp, "l5.safetensors")
    subprocess.run([WORKER, "train", "--model", "lenet5", "--data",
                    "idx:/usr/share/datasets/fashion-mnist", "--limit-train", "64",
                    "--limit-test", "32", "--epochs", "1", "--threads", "2", "--quiet", "--out",
                    l5], check=True, capture_output=True, timeout=120)
    subprocess.run([WORKER, "export", "--model", l5, "--out", onnx], check=True,
                   capture_output=True, timeout=120)
    s.proc.send_signal(signal.SIGTERM)
    s.proc.wait(timeout=30)
    with open(onnx, "rb") as f:
        part_c(f.read())
    cleanup()
    print("farm_e2e: all checks passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException:
        cleanup()
        raise
