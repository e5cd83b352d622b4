#!/usr/bin/python3
"""PyTorch inference peer of the compiler benchmark (make bench-compile).

Loads a state dict written by compile_models.py into the same module, puts
it in eval mode and prepares it as a deployment would: torch.jit.trace, then
torch.jit.freeze (weights and BatchNorm folded into constants), then
torch.jit.optimize_for_inference (oneDNN convolution layouts, fusions).
Then runs the input WARMUP times untimed and RUNS times timed, one forward
per timing (time.perf_counter around the call, under torch.inference_mode),
and prints one JSON line on stdout, the same keys as the generated bundle's
bench and tests/bench/ort_bench.js:

  {"engine":"pytorch","model","variant","threads","batch","runs",
   "latency_ms":{"mean","p50","p90","min"},"max_rel_err",...}

max_rel_err = max|y - ref| / max|ref| against the reference logits (eager
PyTorch, written by compile_models.py). Percentiles interpolate linearly
between order statistics (numpy's default), as ort_bench.js does.

Usage: torch_infer.py --model vgg16-cifar --weights M_pattern.pt --input M_x.npy
                      [--ref M_pattern_y.npy] [--runs 200] [--warmup 20] [--threads 2]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compile_models import MODELS, build  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, choices=sorted(MODELS))
    ap.add_argument("--weights", required=True, help="state dict (.pt) from compile_models.py")
    ap.add_argument("--input", required=True, help="float32 .npy, batch axis first")
    ap.add_argument("--ref", help="reference logits .npy for max_rel_err")
    ap.add_argument("--variant", default="", help="label copied into the JSON")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    model = build(a.model)
    model.load_state_dict(torch.load(a.weights))
    model.eval()
    x = torch.from_numpy(np.load(a.input))
    with torch.inference_mode():
        traced = torch.jit.trace(model, x)
    frozen = torch.jit.freeze(traced)
    opt = torch.jit.optimize_for_inference(frozen)

    times = []
    with torch.inference_mode():
        for _ in range(a.warmup):
            y = opt(x)
        for _ in range(a.runs):
            t0 = time.perf_counter()
            y = opt(x)
            times.append((time.perf_counter() - t0) * 1e3)
    y = y.numpy()
    err = None
    if a.ref:
        ref = np.load(a.ref).astype(np.float64)
        err = float(np.abs(y.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))
    t = np.array(times)
    print(json.dumps({
        "engine": "pytorch", "model": a.model, "variant": a.variant, "target": "cpu",
        "threads": a.threads, "batch": int(x.shape[0]), "runs": a.runs, "warmup": a.warmup,
        "latency_ms": {"mean": float(t.mean()), "p50": float(np.percentile(t, 50)),
                       "p90": float(np.percentile(t, 90)), "min": float(t.min())},
        "max_rel_err": err, "torch_version": torch.__version__,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }), flush=True)


if __name__ == "__main__":
    main()
