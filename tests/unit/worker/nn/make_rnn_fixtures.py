#!/usr/bin/env python3
"""Write PyTorch reference fixtures for the engine's LSTM and GRU tests.

    /usr/bin/python3 tests/unit/worker/nn/make_rnn_fixtures.py OUTDIR

writes OUTDIR/nn/<case>.bin for every case below, in the DPFX format of
make_fixtures.py (read by nn_test_util.h's nn_fx_load with DP_TEST_DATA =
OUTDIR). tests/unit/worker/nn/test_rnn.c runs it into a temporary
directory at test time, so nothing generated is committed.

Each case runs torch.nn.LSTM / torch.nn.GRU (batch_first, one layer, zero
initial state) in float64 on float32-exact inputs and stores the output
and the gradients of sum(out * dout) for the input and the four
parameters. A case with block = k > 0 draws block-circulant vectors
(ceil(rows/k), ceil(cols/k), k) and expands them here, independently of
the C code, with the first-column convention of common/op.h:

    W[i*k + r][j*k + s] = c[i][j][(r - s) mod k]

so the stored gradients are with respect to the vectors.

Arrays: cfg = (B, T, F, H, k), x, w_ih, w_hh, b_ih, b_hh, out, dout, dx,
dw_ih, dw_hh, db_ih, db_hh.
"""

import os
import struct
import sys
import zlib

try:
    import torch
except ImportError:
    sys.exit("make_rnn_fixtures.py needs PyTorch (python3-torch); run it with /usr/bin/python3")

torch.set_num_threads(2)

# name, kind, B, T, F, H, k: the block sizes divide none of the dimensions,
# so the padding of the circulant blocks is exercised.
CASES = [
    ("lstm_dense", "lstm", 2, 4, 5, 3, 0),
    ("lstm_block3", "lstm", 2, 3, 7, 5, 3),
    ("gru_dense", "gru", 3, 5, 4, 6, 0),
    ("gru_block4", "gru", 2, 4, 5, 7, 4),
]


def write_fixture(path, arrays):
    blob = bytearray(struct.pack("<4sII", b"DPFX", 1, len(arrays)))
    for name, t in arrays:
        t = torch.as_tensor(t).detach().to(torch.float32).contiguous()
        nm = name.encode("ascii")
        blob += struct.pack("<I", len(nm)) + nm + struct.pack("<I", t.dim())
        for s in t.shape:
            blob += struct.pack("<i", s)
        blob += struct.pack("<%df" % t.numel(), *t.flatten().tolist())
    with open(path + ".tmp", "wb") as f:
        f.write(bytes(blob))
    os.replace(path + ".tmp", path)


def randn(*shape, scale=1.0):
    """float32 samples widened to float64 and made leaves for autograd."""
    t = (torch.randn(*shape, dtype=torch.float32) * scale).double()
    return t.requires_grad_(True)


def expand(c, rows, cols, k):
    """The dense rows x cols matrix that circulant vectors c (p, q, k) stand for."""
    r = torch.arange(rows).view(rows, 1)
    s = torch.arange(cols).view(1, cols)
    q = c.shape[1]
    idx = ((r // k) * q + (s // k)) * k + (r % k - s % k) % k
    return c.reshape(-1)[idx.reshape(-1)].reshape(rows, cols)


def case(name, kind, B, T, F, H, k):
    torch.manual_seed(zlib.crc32(name.encode("ascii")))
    G = (4 if kind == "lstm" else 3) * H
    if k == 0:
        w_ih, w_hh = randn(G, F, scale=0.5), randn(G, H, scale=0.5)
        W_ih, W_hh = w_ih * 1.0, w_hh * 1.0  # a graph edge, for autograd.grad below
    else:
        w_ih = randn(-(-G // k), -(-F // k), k, scale=0.5)
        w_hh = randn(-(-G // k), -(-H // k), k, scale=0.5)
        W_ih, W_hh = expand(w_ih, G, F, k), expand(w_hh, G, H, k)
    b_ih, b_hh = randn(G, scale=0.3), randn(G, scale=0.3)
    x = randn(B, T, F)
    mod = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(F, H, batch_first=True).double()
    with torch.no_grad():
        mod.weight_ih_l0.copy_(W_ih)
        mod.weight_hh_l0.copy_(W_hh)
        mod.bias_ih_l0.copy_(b_ih)
        mod.bias_hh_l0.copy_(b_hh)
    out, _ = mod(x)
    dout = torch.randn(B, T, H, dtype=torch.float32).double()
    out.backward(dout)
    # The module's parameter gradients, carried back to the stored vectors
    # through the expansion when circulant (the identity when dense).
    dw_ih, dw_hh = torch.autograd.grad([W_ih, W_hh], [w_ih, w_hh],
                                       [mod.weight_ih_l0.grad, mod.weight_hh_l0.grad])
    return [("cfg", torch.tensor([B, T, F, H, k], dtype=torch.float64)), ("x", x),
            ("w_ih", w_ih), ("w_hh", w_hh), ("b_ih", b_ih), ("b_hh", b_hh), ("out", out),
            ("dout", dout), ("dx", x.grad), ("dw_ih", dw_ih), ("dw_hh", dw_hh),
            ("db_ih", mod.bias_ih_l0.grad), ("db_hh", mod.bias_hh_l0.grad)]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_rnn_fixtures.py OUTDIR")
    out_dir = os.path.join(sys.argv[1], "nn")
    os.makedirs(out_dir, exist_ok=True)
    for row in CASES:
        write_fixture(os.path.join(out_dir, row[0] + ".bin"), case(*row))


if __name__ == "__main__":
    main()
