#!/usr/bin/python3
"""Checks exported ONNX files against independent tools (test peer only).

  peer_check.py compare A.npy B.npy TOL          max|A-B| / max|B| <= TOL
  peer_check.py checker MODEL.onnx               onnx.checker, full_check=True
  peer_check.py opencv MODEL.onnx X.npy Y.npy TOL
      OpenCV's dnn module loads MODEL.onnx and its outputs on X match Y
Prints one line and exits 1 on a mismatch.
"""
import sys

import numpy as np


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        return float('inf')
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def main():
    what = sys.argv[1]
    if what == 'compare':
        e = rel_err(np.load(sys.argv[2]), np.load(sys.argv[3]))
        ok = e <= float(sys.argv[4])
        print('%s: relative error %.3g (limit %s)' % ('ok' if ok else 'FAIL', e, sys.argv[4]))
    elif what == 'checker':
        import onnx
        m = onnx.load(sys.argv[2])
        onnx.checker.check_model(m, full_check=True)
        ok = True
        print('ok: onnx.checker (full_check) accepts %s, %d nodes, opset %d'
              % (sys.argv[2].split('/')[-1], len(m.graph.node), m.opset_import[0].version))
    elif what == 'opencv':
        import cv2
        net = cv2.dnn.readNetFromONNX(sys.argv[2])
        net.setInput(np.load(sys.argv[3]))
        out = net.forward()
        e = rel_err(out, np.load(sys.argv[4]))
        ok = e <= float(sys.argv[5])
        print('%s: OpenCV %s dnn runs %s, relative error %.3g against our engine'
              % ('ok' if ok else 'FAIL', cv2.__version__, sys.argv[2].split('/')[-1], e))
    else:
        raise SystemExit('unknown check ' + what)
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
