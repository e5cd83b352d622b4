#!/usr/bin/python3
"""The compiler's storage table (make bench-compile, docs/benchmarks.md,
"Storage as the compiler stores it").

Benchmark driver only, never product run time. For each model (the engine's
vgg16-cifar and resnet20-cifar, random weights, tests/bench/compile_models.py)
three variants are exported to ONNX and compiled by `dnnpress-worker compile
--target native` (no build needed: the bytes are the compiler's own):
  pattern     8 patterns of 4 taps on every 3x3 conv + connectivity 1/3.6
              (compile_models.py's projection, the speed benchmark's model)
  pattern-q4  the same, its 3x3 conv weights then quantized to 4 bits
              (a * {-7..7}, one scale per layer, the compressor's kbit levels;
              a kept weight stays at least one level from 0, so its pattern
              stays) before BatchNorm calibration: FKW with quantized values
  irregular   every conv and linear weight magnitude-pruned to the pattern
              model's density (irregular: CSR / bitmask / dense by the
              measured break-even)
and the bundle's formats.json is summed: per format the bytes of every conv
and linear layer's weights and indices (every index counted; biases, the
same in all formats, excluded), where a format cannot hold a layer (FKW of a
non-pattern layer, quantized values of a float layer) the layer counted as
stored; "stored" is what weights.bin holds for those layers (biases and
64-byte alignment included) and weights.bin the whole file.

Usage: compile_storage.py WORKER OUT [--models vgg16-cifar,resnet20-cifar]
"""
import argparse
import json
import os
import subprocess
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compile_models import build, calibrate_bn, prune  # noqa: E402


def quantize4(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                # Kept weights stay non-zero (at least one level), so the
                # pattern masks survive quantization.
                a = m.weight.abs().max() / 7.0
                q = torch.round(m.weight / a).clamp(-7, 7)
                q = torch.where((q == 0) & (m.weight != 0), torch.sign(m.weight), q)
                m.weight.copy_(q * a)


def irregular(model, density):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                k = max(1, int(round(w.numel() * density)))
                thr = w.abs().flatten().kthvalue(w.numel() - k + 1).values
                w.mul_((w.abs() >= thr).float())


def density_of(model):
    nz = n = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nz += int((m.weight != 0).sum())
            n += m.weight.numel()
    return nz / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("worker")
    ap.add_argument("out")
    ap.add_argument("--models", default="vgg16-cifar,resnet20-cifar")
    a = ap.parse_args()
    torch.set_num_threads(2)
    os.makedirs(a.out, exist_ok=True)
    rows = []
    for name in a.models.split(","):
        torch.manual_seed(1)
        base = build(name)
        variants = {}
        for v in ("pattern", "pattern-q4", "irregular"):
            m = build(name)
            m.load_state_dict(base.state_dict())
            if v.startswith("pattern"):
                prune(m, 8, 3.6)
                if v == "pattern-q4":
                    quantize4(m)
            variants[v] = m
        irregular(variants["irregular"], density_of(variants["pattern"]))
        for v, m in variants.items():
            calibrate_bn(m, torch.Generator().manual_seed(3))
            m.eval()
            path = os.path.join(a.out, "%s_%s.onnx" % (name, v))
            torch.onnx.export(m, torch.randn(1, 3, 32, 32), path, opset_version=13,
                              input_names=["input"], output_names=["logits"])
            d = os.path.join(a.out, "%s_%s" % (name, v))
            subprocess.run([a.worker, "compile", "--model", path, "--out", d], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            f = json.load(open(os.path.join(d, "formats.json")))
            fm = {}
            for l in f["layers"]:
                key = l["format"] + ("+q%d" % l["value_bits"] if l["value_bits"] < 32 else "")
                fm[key] = fm.get(key, 0) + 1
            rows.append(dict(model=name, variant=v, totals=f["totals"],
                             weights_bin=f["weights_bin_bytes"], formats=fm))
    with open(os.path.join(a.out, "storage.json"), "w") as fh:
        json.dump(rows, fh, indent=1)
    cols = ("dense", "csr", "bitmask", "fkw", "fkw_q", "stored")
    print("Storage as the compiler stores it (conv + linear weights and indices, bytes; "
          "tests/bench/compile_storage.py)")
    hdr = ("model", "variant") + cols + ("weights.bin", "rate", "layers")
    out = [hdr]
    for r in rows:
        t = r["totals"]
        out.append((r["model"], r["variant"]) + tuple("{:,}".format(t[c]) for c in cols) +
                   ("{:,}".format(r["weights_bin"]), "%.2fx" % (t["dense"] / r["weights_bin"]),
                    ", ".join("%d %s" % (n, k) for k, n in sorted(r["formats"].items()))))
    w = [max(len(x[i]) for x in out) for i in range(len(hdr))]
    for k, x in enumerate(out):
        print(" | ".join(c.ljust(w[i]) if i in (0, 1, len(hdr) - 1) else c.rjust(w[i])
                         for i, c in enumerate(x)))
        if k == 0:
            print("-+-".join("-" * n for n in w))
    return 0


if __name__ == "__main__":
    sys.exit(main())
