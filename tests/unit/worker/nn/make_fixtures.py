#!/usr/bin/env python3
"""Write the PyTorch reference fixtures for the engine's layer tests.

Run once by a developer, from the repository root, whenever a case is added:

    python3 tests/unit/worker/nn/make_fixtures.py     (needs python3-torch)

On Debian the packaged torch lives under /usr/bin/python3; if `python3` on
PATH is another interpreter, run /usr/bin/python3 instead. The output is
deterministic (fixed seeds, CPU, float64 arithmetic), so rerunning it must
leave `git diff tests/data/nn` empty. tests/unit/worker/nn/test_reference.c
(Criterion suite "reference") reads the files.

Every case computes in float64 from float32 inputs and stores the results
rounded to float32, so the stored expectations are the exact answer for the
stored inputs to within float32 rounding; the engine's own float32 error is
then the only thing the C tolerance has to absorb.

FILE FORMAT (tests/data/nn/<case>.bin, all integers little-endian):

    char     magic[4]     "DPFX"
    uint32   version      1
    uint32   n_arrays
    n_arrays times:
        uint32   name_len         1..63
        char     name[name_len]   no terminating NUL
        uint32   ndim             0..8
        int32    dims[ndim]       each >= 1; the element count is their product
        float32  data[count]      little-endian IEEE-754, row-major (C order)

and nothing after the last array. Integer data (labels, max-pool indices,
layer configuration) is stored as float32, exact below 2^24. Every file
holds a "cfg" array with the layer's hyper-parameters; the order of its
fields is given per layer below and mirrored in test_reference.c.
"""

import os
import struct
import sys
import zlib

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("make_fixtures.py needs PyTorch; on Debian: apt-get install python3-torch, "
             "then run it with /usr/bin/python3")

MAGIC = b"DPFX"
VERSION = 1
OUT_DIR = os.path.join("tests", "data", "nn")

# ---- Writing ----------------------------------------------------------------


def write_fixture(case, arrays):
    """arrays: list of (name, tensor); written in this order, as float32."""
    blob = bytearray()
    blob += struct.pack("<4sII", MAGIC, VERSION, len(arrays))
    for name, t in arrays:
        t = torch.as_tensor(t).detach().to(torch.float32).contiguous()
        nm = name.encode("ascii")
        assert 0 < len(nm) < 64
        assert t.dim() <= 8
        blob += struct.pack("<I", len(nm)) + nm
        blob += struct.pack("<I", t.dim())
        for s in t.shape:
            assert s >= 1
            blob += struct.pack("<i", s)
        blob += struct.pack("<%df" % t.numel(), *t.flatten().tolist())
    path = os.path.join(OUT_DIR, case + ".bin")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(bytes(blob))
    os.replace(tmp, path)
    return len(blob)


def seed(case):
    torch.manual_seed(zlib.crc32(case.encode("ascii")))


def randn(*shape):
    """float32 normal samples widened to float64, so inputs are exact in both."""
    return torch.randn(*shape, dtype=torch.float32).double()


def f32(t):
    """Rounds a float64 tensor to float32 values, so the stored input is exact."""
    return t.float().double()


def leaf(t):
    return f32(t).requires_grad_(True)


def cfg(*vals):
    return torch.tensor([float(v) for v in vals], dtype=torch.float64)


# ---- Cases ------------------------------------------------------------------

# conv2d cfg: B C H W OC OH OW kh kw sh sw pt pl dh dw groups has_bias
CONV_CASES = [
    # name              B  C  H  W  OC kh kw sh sw pt pl pb pr dh dw  g bias
    ("conv2d_basic",     2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    ("conv2d_s2p1",      2, 4, 8, 7, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1),
    ("conv2d_dil2",      1, 3, 9, 8, 4, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1, 1),
    ("conv2d_groups2",   2, 4, 6, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 0),
    ("conv2d_depthwise", 2, 4, 7, 7, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 4, 1),
    ("conv2d_dw_mult2",  1, 3, 6, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3, 1),
    ("conv2d_asym_pad",  2, 3, 6, 6, 4, 3, 3, 1, 1, 1, 0, 0, 2, 1, 1, 1, 1),
    ("conv2d_k5",        1, 2, 8, 9, 3, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1),
    ("conv2d_k1",        2, 5, 4, 5, 3, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1),
    ("conv2d_rect",      2, 2, 6, 9, 3, 1, 3, 2, 1, 0, 1, 0, 1, 1, 1, 1, 1),
]


def conv_case(row):
    (name, B, C, H, W, OC, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, g, has_bias) = row
    seed(name)
    x = leaf(randn(B, C, H, W))
    w = leaf(randn(OC, C // g, kh, kw) * 0.5)
    b = leaf(randn(OC)) if has_bias else None
    # Asymmetric padding is spelled with F.pad so torch needs no special case.
    xp = F.pad(x, (pl, pr, pt, pb))
    y = F.conv2d(xp, w, b, stride=(sh, sw), dilation=(dh, dw), groups=g)
    OH, OW = y.shape[2], y.shape[3]
    dout = randn(*y.shape)
    y.backward(dout)
    arrays = [("cfg", cfg(B, C, H, W, OC, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw, g, has_bias)),
              ("inp", x), ("weight", w)]
    if has_bias:
        arrays.append(("bias", b))
    arrays += [("out", y), ("dout", dout), ("dinp", x.grad), ("dweight", w.grad)]
    if has_bias:
        arrays.append(("dbias", b.grad))
    return name, arrays


# linear cfg: B I O has_bias
LINEAR_CASES = [
    ("linear_basic", 3, 7, 5, 1),
    ("linear_nobias", 1, 4, 3, 0),
    ("linear_odd", 5, 33, 17, 1),
]


def linear_case(row):
    name, B, I, O, has_bias = row
    seed(name)
    x = leaf(randn(B, I))
    w = leaf(randn(O, I) * 0.3)
    b = leaf(randn(O)) if has_bias else None
    y = F.linear(x, w, b)
    dout = randn(B, O)
    y.backward(dout)
    arrays = [("cfg", cfg(B, I, O, has_bias)), ("inp", x), ("weight", w)]
    if has_bias:
        arrays.append(("bias", b))
    arrays += [("out", y), ("dout", dout), ("dinp", x.grad), ("dweight", w.grad)]
    if has_bias:
        arrays.append(("dbias", b.grad))
    return name, arrays


# bn2d cfg: B C H W eps momentum
BN_CASES = [("bn2d_a", 2, 3, 4, 5), ("bn2d_b", 4, 2, 3, 3)]


def bn_train_case(row):
    name, B, C, H, W = row
    name = name.replace("bn2d", "bn2d_train")
    seed(name)
    eps, momentum = 1e-5, 0.1
    # Per-channel offset and scale so that channels really differ.
    x = leaf(randn(B, C, H, W) * (0.5 + torch.arange(C).double().view(1, C, 1, 1))
             + torch.linspace(-1.0, 2.0, C).double().view(1, C, 1, 1))
    gamma = leaf(1.0 + 0.5 * randn(C))
    beta = leaf(randn(C))
    rm0 = f32(randn(C) * 0.1)
    rv0 = f32(1.0 + randn(C).abs())
    rm, rv = rm0.clone(), rv0.clone()
    y = F.batch_norm(x, rm, rv, gamma, beta, training=True, momentum=momentum, eps=eps)
    dout = randn(B, C, H, W)
    y.backward(dout)
    xd = x.detach()
    mean = xd.mean(dim=(0, 2, 3))
    rstd = 1.0 / torch.sqrt(xd.var(dim=(0, 2, 3), unbiased=False) + eps)
    return name, [("cfg", cfg(B, C, H, W, eps, momentum)), ("inp", x), ("gamma", gamma),
                  ("beta", beta), ("running_mean_in", rm0), ("running_var_in", rv0),
                  ("out", y), ("mean", mean), ("rstd", rstd), ("running_mean_out", rm),
                  ("running_var_out", rv), ("dout", dout), ("dinp", x.grad),
                  ("dgamma", gamma.grad), ("dbeta", beta.grad)]


def bn_eval_case(row):
    name, B, C, H, W = row
    name = name.replace("bn2d", "bn2d_eval")
    seed(name)
    eps = 1e-5
    x = f32(randn(B, C, H, W) * 2.0 + 0.5)
    gamma = f32(1.0 + 0.5 * randn(C))
    beta = randn(C)
    rm = randn(C)
    rv = f32(0.5 + randn(C).abs())
    y = F.batch_norm(x, rm, rv, gamma, beta, training=False, eps=eps)
    return name, [("cfg", cfg(B, C, H, W, eps, 0.1)), ("inp", x), ("gamma", gamma),
                  ("beta", beta), ("running_mean", rm), ("running_var", rv), ("out", y)]


# pool cfg: B C H W OH OW kh kw sh sw pt pl count_include_pad
MAXPOOL_CASES = [
    # name               B  C  H  W kh kw sh sw ph pw
    ("maxpool_k2s2",      2, 3, 6, 8, 2, 2, 2, 2, 0, 0),
    ("maxpool_k3s2p1",    2, 2, 7, 8, 3, 3, 2, 2, 1, 1),
    ("maxpool_k3s1p1",    1, 3, 5, 6, 3, 3, 1, 1, 1, 1),
    ("maxpool_rect",      2, 2, 6, 7, 2, 3, 2, 1, 1, 1),
]


def distinct_values(B, C, H, W):
    """A shuffled ramp: no ties, so the arg-max is unambiguous in every window."""
    n = B * C * H * W
    perm = torch.randperm(n).double()
    return ((perm - n / 2.0) * (4.0 / n)).view(B, C, H, W)


def maxpool_case(row):
    name, B, C, H, W, kh, kw, sh, sw, ph, pw = row
    seed(name)
    x = leaf(distinct_values(B, C, H, W))
    y, idx = F.max_pool2d(x, (kh, kw), (sh, sw), (ph, pw), return_indices=True)
    OH, OW = y.shape[2], y.shape[3]
    dout = randn(*y.shape)
    y.backward(dout)
    return name, [("cfg", cfg(B, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw, 1)), ("inp", x),
                  ("out", y), ("argmax", idx.double()), ("dout", dout), ("dinp", x.grad)]


AVGPOOL_CASES = [
    # name                 B  C  H  W kh kw sh sw ph pw incl
    ("avgpool_k2s2",        2, 3, 6, 8, 2, 2, 2, 2, 0, 0, 1),
    ("avgpool_k3s2p1_incl", 2, 2, 7, 8, 3, 3, 2, 2, 1, 1, 1),
    ("avgpool_k3s2p1_excl", 2, 2, 7, 8, 3, 3, 2, 2, 1, 1, 0),
    ("avgpool_k3s1p1_excl", 1, 3, 5, 6, 3, 3, 1, 1, 1, 1, 0),
    ("avgpool_rect_excl",   2, 2, 6, 7, 2, 3, 2, 1, 1, 1, 0),
]


def avgpool_case(row):
    name, B, C, H, W, kh, kw, sh, sw, ph, pw, incl = row
    seed(name)
    x = leaf(randn(B, C, H, W))
    y = F.avg_pool2d(x, (kh, kw), (sh, sw), (ph, pw), count_include_pad=bool(incl))
    OH, OW = y.shape[2], y.shape[3]
    dout = randn(*y.shape)
    y.backward(dout)
    return name, [("cfg", cfg(B, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw, incl)), ("inp", x),
                  ("out", y), ("dout", dout), ("dinp", x.grad)]


def adaptive_avgpool_case():
    # adaptive_avg_pool2d from 6x9 to 2x3 is an average pool with 3x3 windows
    # and stride 3; the engine expresses it that way.
    name = "avgpool_adaptive"
    seed(name)
    B, C, H, W = 2, 3, 6, 9
    x = leaf(randn(B, C, H, W))
    y = F.adaptive_avg_pool2d(x, (2, 3))
    dout = randn(*y.shape)
    y.backward(dout)
    return name, [("cfg", cfg(B, C, H, W, 2, 3, 3, 3, 3, 3, 0, 0, 1)), ("inp", x), ("out", y),
                  ("dout", dout), ("dinp", x.grad)]


# gap cfg: B C H W
def gap_case(name, B, C, H, W):
    seed(name)
    x = leaf(randn(B, C, H, W))
    y = F.adaptive_avg_pool2d(x, 1)
    dout = randn(B, C, 1, 1)
    y.backward(dout)
    return name, [("cfg", cfg(B, C, H, W)), ("inp", x), ("out", y.view(B, C)),
                  ("dout", dout.view(B, C)), ("dinp", x.grad)]


def away_from(x, kinks, margin):
    """Moves values within `margin` of a kink out to kink +- margin."""
    for k in kinks:
        near = (x - k).abs() < margin
        x = torch.where(near, k + margin * torch.sign(x - k + 1e-12), x)
    return x


# relu / relu6 cfg: n
def act_case(name, fn, kinks, lo, hi, n):
    seed(name)
    x = torch.rand(n, dtype=torch.float32).double() * (hi - lo) + lo
    x = leaf(away_from(x, kinks, 0.05))
    y = fn(x)
    dout = randn(n)
    y.backward(dout)
    return name, [("cfg", cfg(n)), ("inp", x), ("out", y), ("dout", dout), ("dinp", x.grad)]


# xent cfg: B K
def xent_case(name, B, K, scale, shift):
    seed(name)
    logits = leaf(randn(B, K) * scale + shift)
    labels = torch.randint(0, K, (B,))
    loss = F.cross_entropy(logits, labels)  # mean over the batch
    loss.backward()
    probs = torch.softmax(logits.detach(), dim=1)
    correct = (logits.detach().argmax(dim=1) == labels).sum()
    return name, [("cfg", cfg(B, K)), ("logits", logits), ("labels", labels.double()),
                  ("loss", loss.detach().view(1)), ("probs", probs),
                  ("dlogits", logits.grad), ("correct", correct.double().view(1))]


def all_cases():
    for row in CONV_CASES:
        yield conv_case(row)
    for row in LINEAR_CASES:
        yield linear_case(row)
    for row in BN_CASES:
        yield bn_train_case(row)
        yield bn_eval_case(row)
    for row in MAXPOOL_CASES:
        yield maxpool_case(row)
    for row in AVGPOOL_CASES:
        yield avgpool_case(row)
    yield adaptive_avgpool_case()
    yield gap_case("gap_a", 2, 3, 4, 5)
    yield gap_case("gap_b", 3, 5, 1, 7)
    yield act_case("relu", F.relu, [0.0], -3.0, 3.0, 40)
    yield act_case("relu6", F.relu6, [0.0, 6.0], -2.0, 8.0, 60)
    yield xent_case("xent_basic", 4, 5, 2.0, 0.0)
    yield xent_case("xent_large", 3, 7, 40.0, 500.0)


def main():
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT_DIR, exist_ok=True)
    total = 0
    for name, arrays in all_cases():
        total += write_fixture(name, arrays)
    print("wrote %s (%d bytes in all)" % (OUT_DIR, total))


if __name__ == "__main__":
    main()
