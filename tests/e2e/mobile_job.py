"""Filter pruning + purification jobs on the mobile networks teams bring
(issue 17), through the real dnnpress-server and its local worker.

torchvision's mobilenet_v3_small, efficientnet_b0 and shufflenet_v2_x0_5 (random weights, 10
classes, exported here by torch.onnx at opset 13 for 3x64x64 inputs) are
uploaded as models, with an NPY dataset tar of synthetic 3x64x64 images
(64 train, 32 test). Each job filter-prunes every convolution by 2 with
the magnitude method in a one-epoch budget and purifies. Then:
  - the report's purification states the largest difference between the
    pruned and the purified model's logits on the test images (measured
    by the worker): at most 1e-4 relative;
  - shapes really shrink: fewer parameters, and the squeeze-excitation
    convs lose the channels their block lost (fc2's filters, fc1's inputs);
    ShuffleNet's branches lose middle channels through its channel splits,
    concats and shuffles (a depthwise conv's filters, the next 1x1's inputs);
  - the returned ONNX model is smaller, and ONNX Runtime (tests/ort/run_onnx.js)
    on raw [0, 1] pixels gives the engine's outputs (`dnnpress-worker infer`
    on the same file, and on the returned checkpoint) within 1e-4.
About 3 minutes on 2 cores (most of it EfficientNet-B0's epoch). A second
argument, a comma-separated list, runs only those nets.
"""
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_lib import Env, call, free_port, wait_job  # noqa: E402

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build/release"
WORKER = os.path.join(BUILD, "dnnpress-worker")
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
ADMIN = "mobile-job-e2e-admin-token-0123456789"
NETS = ("mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x0_5")
if len(sys.argv) > 2:
    NETS = tuple(n for n in sys.argv[2].split(",") if n in NETS)
TOL = 1e-4
SPEC = {"method": "magnitude", "batch": 16, "purify": True, "budget": {"epochs": 1},
        "retrain": {"epochs": 1}, "magnitude": {"steps": 1},
        "layers": [{"match": "*Conv", "prune": {"scheme": "filter", "rate": 2}}]}
tmp = tempfile.mkdtemp(prefix="dp-mobile-e2e-")
env = Env(BUILD, tmp, ADMIN)

EXPORT = r"""
import sys, torch, torchvision
torch.manual_seed(0)
for name in sys.argv[2:]:
    m = getattr(torchvision.models, name)(num_classes=10).eval()
    torch.onnx.export(m, torch.rand(1, 3, 64, 64), f"{sys.argv[1]}/{name}.onnx",
                      opset_version=13, input_names=["x"], output_names=["y"])
"""


def fail(msg):
    env.fail(msg, "mobile_job")


def ok(port, method, path, token, **kw):
    st, j = call(port, method, path, token=token, **kw)
    if st >= 300:
        fail(f"{method} {path}: {st} {j}")
    return j


def run(args, what):
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        fail(f"{what}: exit {p.returncode}: {(p.stdout + p.stderr)[-2000:]}")
    return p


def close(a, b, what):
    a, b = np.load(a), np.load(b)
    if a.shape != b.shape:
        fail(f"{what}: shapes {a.shape} and {b.shape}")
    err = float(np.max(np.abs(a - b) / (1.0 + np.abs(b))))
    if not err <= TOL:
        fail(f"{what}: max relative difference {err:g} > {TOL:g}")
    return err


def onnx_params(path):
    p = run(["/usr/bin/python3", "-c", "import onnx, numpy, sys\n"
             "m = onnx.load(sys.argv[1])\n"
             "print(sum(int(numpy.prod(t.dims)) for t in m.graph.initializer))", path],
            "counting ONNX parameters")
    return int(p.stdout.strip())


def main():
    t_all = time.time()
    run(["/usr/bin/python3", "-W", "ignore", "-c", EXPORT, tmp, *NETS], "torch.onnx export")
    rs = np.random.RandomState(7)
    npy = os.path.join(tmp, "npy")
    os.makedirs(npy)
    for split, n in (("train", 64), ("test", 32)):
        np.save(os.path.join(npy, f"x_{split}.npy"),
                rs.randint(0, 256, (n, 3, 64, 64)).astype(np.uint8))
        np.save(os.path.join(npy, f"y_{split}.npy"), (np.arange(n) % 10).astype(np.int64))
    tar = os.path.join(tmp, "npy.tar")
    with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as t:
        for f in sorted(os.listdir(npy)):
            t.add(os.path.join(npy, f), arcname=f)
    x01 = os.path.join(tmp, "x01.npy")  # the test images as raw [0, 1] pixels
    np.save(x01, (np.load(os.path.join(npy, "x_test.npy")).astype(np.float32) / 255.0))

    data = os.path.join(tmp, "data")
    port = free_port()
    env.start_server(data, port, 1, env_extra={"OMP_NUM_THREADS": "2"})
    team = ok(port, "POST", "/api/v1/teams", ADMIN, body={"name": "mobile"})["id"]
    token = ok(port, "POST", "/api/v1/tokens", ADMIN,
               body={"team_id": team, "scope": "team"})["token"]
    with open(tar, "rb") as f:
        dataset = ok(port, "POST", "/api/v1/datasets?name=synth64&format=npy", token,
                     raw=f.read())["id"]
    for net in NETS:
        t0 = time.time()
        src = os.path.join(tmp, f"{net}.onnx")
        with open(src, "rb") as f:
            model = ok(port, "POST", f"/api/v1/models?name={net}&format=onnx", token,
                       raw=f.read())["id"]
        job = ok(port, "POST", "/api/v1/jobs", token,
                 body={"name": net, "model_id": model, "dataset_id": dataset, "spec": SPEC,
                       "export": {"format": "onnx"}, "max_attempts": 1})["id"]
        j = wait_job(port, token, job, ok, fail, timeout=600)
        if j["state"] != "succeeded":
            fail(f"{net}: job {j['state']}: {json.dumps(j)[:2000]}")
        report = ok(port, "GET", f"/api/v1/jobs/{job}/report", token)
        pur = report.get("purification") or {}
        diff = pur.get("max_logit_diff")
        if not (isinstance(diff, float) and diff <= TOL):
            fail(f"{net}: purified vs pruned logits: {diff} (want <= {TOL})")
        if not pur.get("params_after", 1 << 60) < pur.get("params_before", 0):
            fail(f"{net}: purification did not shrink the model: {pur}")
        layers = {l["name"]: l for l in pur.get("layers", [])}
        # SE nets: the SE convs (fc1 reads, fc2 writes the block's channels);
        # ShuffleNet: each branch2's depthwise conv (branch2.3) and the 1x1
        # after it (branch2.5), whose channels pass the split and shuffles.
        a, b = ("fc1", "fc2") if "shufflenet" not in net else ("branch2.5", "branch2.3")
        fc1 = [l for n, l in layers.items() if a in n and l["after"][1] < l["before"][1]]
        fc2 = [l for n, l in layers.items() if b in n and l["after"][0] < l["before"][0]]
        if not fc1 or not fc2:
            fail(f"{net}: no {a} input or {b} filter lost channels: {list(layers)}")
        outs = j["outputs"]
        files = {}
        for kind in ("onnx", "model"):
            st, body = call(port, "GET", f"/api/v1/artifacts/{outs[kind]}", token=token,
                            parse=False)
            if st != 200:
                fail(f"{net}: artifact {kind}: {st}")
            files[kind] = os.path.join(tmp, f"{net}.out." +
                                       ("onnx" if kind == "onnx" else "safetensors"))
            with open(files[kind], "wb") as f:
                f.write(body)
        before, after = onnx_params(src), onnx_params(files["onnx"])
        if not after < before:
            fail(f"{net}: the returned ONNX holds {after} parameters, the upload {before}")
        y_ort, y_eng, y_ck = (os.path.join(tmp, f"{net}.{k}.npy") for k in ("ort", "eng", "ck"))
        run(["node", os.path.join(ROOT, "tests", "ort", "run_onnx.js"), files["onnx"], x01,
             y_ort], "ONNX Runtime")
        run([WORKER, "infer", "--model", files["onnx"], "--input", x01, "--output", y_eng,
             "--threads", "2"], "dnnpress-worker infer (ONNX)")
        run([WORKER, "infer", "--model", files["model"], "--input", x01, "--output", y_ck,
             "--threads", "2"], "dnnpress-worker infer (checkpoint)")
        e1 = close(y_ort, y_eng, f"{net}: ONNX Runtime vs the engine on the returned ONNX")
        e2 = close(y_ort, y_ck, f"{net}: ONNX Runtime vs the engine on the returned checkpoint")
        print(f"mobile_job: ok: {net}: {pur['params_before']} -> {pur['params_after']} params "
              f"({pur['channels_removed']} channels, {len(fc2)} blocks shrank), purified vs "
              f"pruned {diff:.1e}, ONNX {before} -> {after}, ORT vs engine {max(e1, e2):.1e} "
              f"({time.time() - t0:.0f}s)", flush=True)
    print(f"mobile_job: all ok in {time.time() - t_all:.0f}s", flush=True)


try:
    main()
finally:
    env.kill_all()
    if os.environ.get("DP_E2E_KEEP"):
        print(f"mobile_job: kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
