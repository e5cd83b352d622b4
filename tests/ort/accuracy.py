#!/usr/bin/python3
"""Test accuracy of an ONNX model in ONNX Runtime on raw Fashion-MNIST pixels.

  accuracy.py MODEL.onnx N [REPORT.json]

Runs MODEL.onnx (tests/ort/run_onnx.js: npm's onnxruntime-node, installed
by `make deps`) on the first N test images of /usr/share/datasets/
fashion-mnist as pixels scaled to [0, 1], with no other preprocessing, and
prints the accuracy on one line. With a compression report, the accuracy
must equal the report's final_test_accuracy within one image (a float
rounding at a tie); exit status 1 otherwise. A test peer only (the demo and
tests/e2e/job_e2e.py use it), never run time.
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

FM = "/usr/share/datasets/fashion-mnist/"
HERE = os.path.dirname(os.path.abspath(__file__))


def accuracy(model, n):
    if not os.path.isdir(os.path.join(HERE, "node_modules", "onnxruntime-node")):
        sys.exit("accuracy.py: no onnxruntime-node in tests/ort (run make deps)")
    with gzip.open(FM + "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    with gzip.open(FM + "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    with tempfile.TemporaryDirectory(prefix="dp-ort-") as d:
        x, y = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
        np.save(x, (images / 255.0).astype(np.float32))
        p = subprocess.run(["node", os.path.join(HERE, "run_onnx.js"), model, x, y],
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            sys.exit("accuracy.py: ONNX Runtime failed on %s: %s" % (model, p.stderr[-2000:]))
        return float((np.load(y).argmax(axis=1) == labels).mean()), len(labels)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    acc, n = accuracy(sys.argv[1], int(sys.argv[2]))
    line = "ONNX Runtime on %d raw [0, 1] test images: %.2f%% accuracy" % (n, 100 * acc)
    if len(sys.argv) == 4:
        with open(sys.argv[3]) as f:
            want = json.load(f)["final_test_accuracy"]
        ok = abs(acc - want) <= 1.0 / n + 1e-6
        print("%s: %s, the report says %.2f%%" % ("ok" if ok else "FAIL", line, 100 * want))
        sys.exit(0 if ok else 1)
    print(line)


if __name__ == "__main__":
    main()
