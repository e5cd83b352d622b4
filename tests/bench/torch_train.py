#!/usr/bin/env python3
"""PyTorch peer of the dnnpress benchmark (make bench, docs/benchmarks.md).

Trains the same models, with the same recipe, as `dnnpress-worker train`:
SGD lr 0.01, momentum 0.9, weight decay 5e-4, cosine annealing stepped per
epoch (T_max = epochs), batch 64, shuffled every epoch from a fixed seed,
PyTorch's default initialisation.

The whole data set is decoded and normalised into memory before any timing.
Only the training loop is timed (forward, backward, optimiser step, batch
gather); evaluation is not. Progress goes to stderr; the last line on stdout
is one JSON object:

  {"engine":"pytorch","model":...,"threads":...,"epochs":...,
   "test_accuracy":...,"train_images_per_second":...,"peak_rss_bytes":...}

Examples:
  torch_train.py --model lenet5 --data idx:/usr/share/datasets/fashion-mnist --epochs 2
  torch_train.py --model resnet20-cifar --synthetic 2048 --epochs 1
"""

import argparse
import gzip
import json
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# What the interpreter plus libtorch cost before any data or model exists.
RSS_AFTER_IMPORT = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---- models ----------------------------------------------------------------


class LeNet5(nn.Module):
    """Caffe's LeNet: no activation after the convolutions, ReLU only
    between the two fully connected layers."""

    def __init__(self, in_ch=1, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, 20, 5)  # 28 -> 24
        self.conv2 = nn.Conv2d(20, 50, 5)  # 12 -> 8
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x), 2)  # 24 -> 12
        x = F.max_pool2d(self.conv2(x), 2)  # 8 -> 4
        x = torch.flatten(x, 1)  # 50*4*4 = 800
        return self.fc2(F.relu(self.fc1(x)))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU. On a
    downsampling block the shortcut is a 1x1 stride-2 conv + BN (option B)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                nn.BatchNorm2d(cout),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """He et al. 2016, CIFAR ResNet-20: 3x3 conv 3->16 + BN + ReLU, three
    stages of three basic blocks (16, 32, 64 channels; stages 2 and 3 start
    with stride 2), global average pool, fc 64 -> 10."""

    def __init__(self, in_ch=3, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers = []
        cin = 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                layers.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class SeqRNN(nn.Module):
    """lstm-fmnist and gru-fmnist: an image read row by row (28 steps of 28
    features, "sequential Fashion-MNIST"), one LSTM or GRU layer of 128
    units, the last step's hidden state, a linear layer to the classes."""

    def __init__(self, kind, features=28, hidden=128, num_classes=10):
        super().__init__()
        rnn = nn.LSTM if kind == "lstm" else nn.GRU
        self.rnn = rnn(features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        out, _ = self.rnn(x.flatten(1, 2) if x.dim() == 4 and x.shape[1] == 1 else x)
        return self.fc(out[:, -1])


# ---- data ------------------------------------------------------------------


def read_idx_gz(path):
    """Decodes a (gzipped) IDX file into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} bytes of data, header says {dims}")
    return data.reshape(dims)


def find_idx(directory, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(directory, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{directory}: no {stem}[.gz]")


def load_idx_dir(directory):
    xtr = read_idx_gz(find_idx(directory, "train-images-idx3-ubyte"))
    ytr = read_idx_gz(find_idx(directory, "train-labels-idx1-ubyte"))
    xte = read_idx_gz(find_idx(directory, "t10k-images-idx3-ubyte"))
    yte = read_idx_gz(find_idx(directory, "t10k-labels-idx1-ubyte"))
    # N x H x W -> N x 1 x H x W
    return xtr[:, None], ytr, xte[:, None], yte


def synthetic(n_train, n_test, seed):
    rng = np.random.default_rng(seed)
    xtr = rng.integers(0, 256, size=(n_train, 3, 32, 32), dtype=np.uint8)
    ytr = rng.integers(0, 10, size=n_train, dtype=np.uint8)
    xte = rng.integers(0, 256, size=(n_test, 3, 32, 32), dtype=np.uint8)
    yte = rng.integers(0, 10, size=n_test, dtype=np.uint8)
    return xtr, ytr, xte, yte


def normalise(xtr_u8, xte_u8, chunk=8192):
    """Scales to [0, 1], then standardises with the training set's
    per-channel mean and (population) std. Works in chunks so that the peak
    RSS is the float32 sets plus the raw bytes, not several float copies."""
    c = xtr_u8.shape[1]
    s1 = np.zeros(c, dtype=np.float64)
    s2 = np.zeros(c, dtype=np.float64)
    for i in range(0, xtr_u8.shape[0], chunk):
        b = xtr_u8[i : i + chunk].astype(np.float64) / 255.0
        s1 += b.sum(axis=(0, 2, 3))
        s2 += (b * b).sum(axis=(0, 2, 3))
    cnt = xtr_u8.shape[0] * xtr_u8.shape[2] * xtr_u8.shape[3]
    mean = s1 / cnt
    std = np.sqrt(np.maximum(s2 / cnt - mean * mean, 0.0))
    m = mean.astype(np.float32).reshape(1, -1, 1, 1)
    inv = (1.0 / std).astype(np.float32).reshape(1, -1, 1, 1)

    def convert(x_u8):
        out = np.empty(x_u8.shape, dtype=np.float32)
        for i in range(0, x_u8.shape[0], chunk):
            b = x_u8[i : i + chunk].astype(np.float32) / np.float32(255.0)
            out[i : i + chunk] = (b - m) * inv
        return torch.from_numpy(out)

    return convert(xtr_u8), convert(xte_u8), mean, std


# ---- training --------------------------------------------------------------


def evaluate(model, x, y, batch):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            pred = model(x[i : i + batch]).argmax(dim=1)
            correct += int((pred == y[i : i + batch]).sum())
    return correct / x.shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, choices=["lenet5", "resnet20-cifar", "lstm-fmnist", "gru-fmnist"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--optim", choices=["sgd", "adam"], default="sgd")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--export-onnx", metavar="FILE",
                    help="after training, write the model as ONNX (opset 13) for the "
                         "engine to import (tests/bench/compress.sh)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="idx:DIR with the (gzipped) IDX files")
    src.add_argument("--synthetic", type=int, metavar="N",
                     help="N random 3x32x32 images, 10 classes")
    ap.add_argument("--synthetic-test", type=int, default=512, metavar="N",
                    help="test set size with --synthetic (default 512, as the worker)")
    ap.add_argument("--eval-batch", type=int, default=0, metavar="N",
                    help="evaluation batch size (default: --batch)")
    ap.add_argument("--limit-train", type=int, default=0, metavar="N",
                    help="train on the first N training images only")
    args = ap.parse_args()

    # Threads first: the inter-op pool can only be sized before it starts.
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(args.threads)
    except RuntimeError:
        pass
    torch.manual_seed(args.seed)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    # -- data, fully in memory before any timing
    t0 = time.perf_counter()
    if args.data is not None:
        if not args.data.startswith("idx:"):
            ap.error("--data must be idx:DIR")
        xtr_u8, ytr_u8, xte_u8, yte_u8 = load_idx_dir(args.data[4:])
        dataset = args.data
    else:
        xtr_u8, ytr_u8, xte_u8, yte_u8 = synthetic(
            args.synthetic, args.synthetic_test, args.seed)
        dataset = f"synthetic:{args.synthetic}"
    xtr, xte, mean, std = normalise(xtr_u8, xte_u8)
    ytr = torch.from_numpy(ytr_u8.astype(np.int64))
    yte = torch.from_numpy(yte_u8.astype(np.int64))
    if args.limit_train > 0:
        xtr, ytr = xtr[: args.limit_train].contiguous(), ytr[: args.limit_train]
    n = xtr.shape[0]
    log(f"[pytorch] {dataset}: train {tuple(xtr.shape)} test {tuple(xte.shape)} "
        f"mean {[round(float(v), 4) for v in mean]} std {[round(float(v), 4) for v in std]} "
        f"loaded in {time.perf_counter() - t0:.1f}s; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads")

    in_ch = xtr.shape[1]
    if args.model == "lenet5":
        if xtr.shape[2:] != (28, 28):
            ap.error("lenet5 needs 28x28 images")
        model = LeNet5(in_ch)
    elif args.model in ("lstm-fmnist", "gru-fmnist"):
        if in_ch != 1:
            ap.error(f"{args.model} reads 1-channel images row by row")
        model = SeqRNN(args.model[:3 if args.model.startswith("gru") else 4])
    else:
        model = ResNet20(in_ch)
    nparams = sum(p.numel() for p in model.parameters())

    if args.optim == "adam":
        # As the worker's --optim adam: Adam with L2 weight decay (not AdamW).
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.wd)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                              weight_decay=args.wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    shuffle = torch.Generator().manual_seed(args.seed)

    train_seconds = 0.0
    images = 0
    accs = []
    epoch_ips = []
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(n, generator=shuffle)
        model.train()
        loss_sum = 0.0
        steps = 0
        lr = opt.param_groups[0]["lr"]
        t = time.perf_counter()
        for i in range(0, n, args.batch):
            idx = perm[i : i + args.batch]
            xb, yb = xtr[idx], ytr[idx]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            steps += 1
        dt = time.perf_counter() - t
        train_seconds += dt
        images += n
        sched.step()
        acc = evaluate(model, xte, yte, args.eval_batch or args.batch)
        accs.append(acc)
        epoch_ips.append(n / dt)
        log(f"[pytorch] {args.model} epoch {epoch}/{args.epochs} lr {lr:.5f} "
            f"loss {loss_sum / steps:.4f} train {dt:.1f}s ({n / dt:.0f} img/s) "
            f"test acc {acc * 100:.2f}%")

    result = {
        "engine": "pytorch",
        "model": args.model,
        "threads": args.threads,
        "epochs": args.epochs,
        "test_accuracy": accs[-1] if accs else None,
        "train_images_per_second": images / train_seconds if train_seconds > 0 else None,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_after_import_bytes": RSS_AFTER_IMPORT,
        "dataset": dataset,
        "batch": args.batch,
        "train_images": n,
        "train_seconds": train_seconds,
        "test_accuracy_per_epoch": accs,
        "train_images_per_second_per_epoch": epoch_ips,
        "parameters": nparams,
        "torch_version": torch.__version__,
        "loadavg_1min_at_end": os.getloadavg()[0],
    }
    if args.export_onnx:
        model.eval()
        torch.onnx.export(model, xte[:1], args.export_onnx, opset_version=13,
                          input_names=["input"], output_names=["logits"])
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
