#!/usr/bin/python3
"""The irregular break-even of the compiler (make bench-compile, docs/benchmarks.md,
"Irregular break-even"): density x format, measured with the generated kernels.

Benchmark driver only, never product run time. For lenet5, resnet20-cifar and
vgg16-cifar (PyTorch models with the engine's layers, random weights from a
fixed seed, BatchNorm statistics randomised), every conv and linear weight is
magnitude-pruned to each density of --densities (irregular: the largest |w|
of the whole tensor kept), exported to ONNX, compiled by `dnnpress-worker
compile --sparse csr` and `--sparse bitmask` (and once `--sparse dense`: the
dense path computes the zeros, so its time does not depend on the density),
built, and run by the bundle's bench, which checks the outputs against the
engine and prints per-layer times (the fastest image of the timed runs, the
figure that survives a shared machine).

Printed: per layer kind (conv, linear) and target the time of all layers of
that kind in dense, CSR and bitmask at each density, and the break-evens the
compiler's table takes (worker/codegen/cg_sparse.c):
  csr_max     the largest density where CSR is still faster than bitmask
  sparse_max  the largest density where the faster sparse format still beats
              dense (interpolated linearly between the measured densities)
Per layer, the same two figures are in the JSON written to OUT/sweep.json.

Usage: compile_sweep.py WORKER OUT [--targets native] [--models ...]
                        [--densities 0.03,0.1,...] [--runs 30] [--threads 2]
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "onnx"))
from compile_models import VGG16  # noqa: E402
from torch_train import ResNet20  # noqa: E402
from torch_models import LeNet5  # noqa: E402

MODELS = {"lenet5": (LeNet5, (1, 28, 28)), "resnet20-cifar": (ResNet20, (3, 32, 32)),
          "vgg16-cifar": (VGG16, (3, 32, 32))}


def prune(model, density):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                k = max(1, int(round(w.numel() * density)))
                thr = w.abs().flatten().kthvalue(w.numel() - k + 1).values
                w.mul_((w.abs() >= thr).float())


def randomize_bn(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def export(name, density, path):
    cls, shape = MODELS[name]
    torch.manual_seed(1)
    model = cls()
    randomize_bn(model, torch.Generator().manual_seed(2))
    if density < 1.0:
        prune(model, density)
    model.eval()
    x = torch.randn((1,) + shape, generator=torch.Generator().manual_seed(3))
    torch.onnx.export(model, x, path, opset_version=13, input_names=["input"],
                      output_names=["logits"])


def run_bundle(worker, onnx, target, mode, d, runs, threads):
    subprocess.run([worker, "compile", "--model", onnx, "--out", d, "--target", target,
                    "--sparse", mode, "--threads", str(threads)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["make", "-s", "-C", d], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    out = subprocess.run([os.path.join(d, "bench"), "--runs", str(runs), "--warmup", "3",
                          "--threads", str(threads), "--batch", "1"], check=True,
                         capture_output=True, text=True).stdout
    res = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    fm = json.load(open(os.path.join(d, "formats.json")))
    kinds = {l["name"]: (l["kind"], l["format"], l["density"]) for l in fm["layers"]}
    return {l["name"]: dict(ms=l["min_ms"], kind=kinds[l["name"]][0],
                            format=kinds[l["name"]][1], density=kinds[l["name"]][2])
            for l in res["layers"] if l["name"] in kinds}


def crossing(ds, faster, slower):
    """Largest density at which faster(d) < slower(d) still holds, interpolated
    between the last density where it holds and the next; 0 when never."""
    best = 0.0
    for i, d in enumerate(ds):
        if faster[i] < slower[i]:
            best = d
            if i + 1 < len(ds) and faster[i + 1] >= slower[i + 1]:
                a, b = slower[i] - faster[i], faster[i + 1] - slower[i + 1]
                best = d + (ds[i + 1] - d) * a / (a + b) if a + b > 0 else d
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("worker")
    ap.add_argument("out")
    ap.add_argument("--targets", default="native")
    ap.add_argument("--models", default="lenet5,resnet20-cifar,vgg16-cifar")
    ap.add_argument("--densities", default="0.03,0.07,0.15,0.25,0.4,0.6")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(2)
    ds = [float(x) for x in a.densities.split(",")]
    os.makedirs(a.out, exist_ok=True)
    layers = {}  # (target, model, layer) -> {"kind", "dense", "csr": [..], "bitmask": [..]}
    for name in a.models.split(","):
        paths = {}
        for d in [1.0] + ds:
            paths[d] = os.path.join(a.out, "%s_d%g.onnx" % (name, d))
            export(name, d, paths[d])
        for target in a.targets.split(","):
            bd = os.path.join(a.out, "bundle")
            dense = run_bundle(a.worker, paths[ds[0]], target, "dense", bd, a.runs, a.threads)
            for ln, r in dense.items():
                layers[(target, name, ln)] = {"kind": r["kind"], "dense": r["ms"],
                                              "csr": [], "bitmask": [], "density": []}
            for d in ds:
                for mode in ("csr", "bitmask"):
                    res = run_bundle(a.worker, paths[d], target, mode, bd, a.runs, a.threads)
                    for ln, r in res.items():
                        L = layers[(target, name, ln)]
                        L[mode].append(r["ms"] if r["format"] == mode else L["dense"])
                        if mode == "csr":
                            L["density"].append(r["density"])
            print("compile_sweep: %s %s done" % (target, name), file=sys.stderr)
    # Per layer and per (target, kind) aggregate.
    out = {"densities": ds, "layers": [], "breakeven": []}
    agg = {}
    for (target, model, ln), L in layers.items():
        if not L["csr"]:
            continue
        n = len(ds)
        sparse = [min(L["csr"][i], L["bitmask"][i]) for i in range(n)]
        dense = [L["dense"]] * n
        out["layers"].append(dict(target=target, model=model, layer=ln, kind=L["kind"],
                                  dense_ms=L["dense"], csr_ms=L["csr"], bitmask_ms=L["bitmask"],
                                  csr_max=crossing(ds, L["csr"], L["bitmask"]),
                                  sparse_max=crossing(ds, sparse, dense)))
        A = agg.setdefault((target, L["kind"]), {"dense": 0.0, "csr": [0.0] * n,
                                                 "bitmask": [0.0] * n})
        A["dense"] += L["dense"]
        for i in range(n):
            A["csr"][i] += L["csr"][i]
            A["bitmask"][i] += L["bitmask"][i]
    print("Irregular break-even: all %s layers of %s, summed per-layer times (ms, fastest image)"
          % ("conv and linear", a.models))
    print("%-8s %-7s %8s | %s" % ("target", "kind", "dense", " | ".join(
        "d=%-5g csr / bitmask" % d for d in ds)))
    for (target, kind), A in sorted(agg.items()):
        n = len(ds)
        sparse = [min(A["csr"][i], A["bitmask"][i]) for i in range(n)]
        csr_max = crossing(ds, A["csr"], A["bitmask"])
        sparse_max = crossing(ds, sparse, [A["dense"]] * n)
        print("%-8s %-7s %8.3f | %s" % (target, kind, A["dense"], " | ".join(
            "%7.3f / %7.3f" % (A["csr"][i], A["bitmask"][i]) for i in range(n))))
        out["breakeven"].append(dict(target=target, kind=kind, csr_max=round(csr_max, 3),
                                     sparse_max=round(sparse_max, 3), dense_ms=A["dense"],
                                     csr_ms=A["csr"], bitmask_ms=A["bitmask"]))
    for b in out["breakeven"]:
        print("break-even %-8s %-7s csr_max %.3f (CSR faster than bitmask up to here), "
              "sparse_max %.3f (sparse faster than dense up to here)"
              % (b["target"], b["kind"], b["csr_max"], b["sparse_max"]))
    with open(os.path.join(a.out, "sweep.json"), "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
