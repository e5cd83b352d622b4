#!/usr/bin/env bash
# Writes the ONNX fuzzer's seed corpus into DIR: small models from
# dnnpress-worker export (opsets 10 and 13, with and without Q/DQ) and from
# torch.onnx (LeNet-5 at opsets 9 and 13), all generated, never committed.
set -euo pipefail
WORKER=${1:?usage: make_seeds.sh WORKER DIR}
DIR=${2:?usage: make_seeds.sh WORKER DIR}
mkdir -p "$DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$WORKER" train --model lenet-300-100 --synthetic 64 --epochs 1 --threads 1 --quiet \
    --out "$tmp/mlp.safetensors" > /dev/null
"$WORKER" export --model "$tmp/mlp.safetensors" --out "$DIR/mlp13.onnx"
"$WORKER" export --model "$tmp/mlp.safetensors" --out "$DIR/mlp10.onnx" --opset 10
/usr/bin/python3 -W ignore tests/onnx/torch_models.py "$tmp/t" --models lenet5 --opsets 9,13 > /dev/null 2>&1
cp "$tmp/t/lenet5_op9.onnx" "$tmp/t/lenet5_op13.onnx" "$DIR/"
"$WORKER" export --model "$tmp/t/lenet5_op13.onnx" --out "$DIR/lenet5_re.onnx" --opset 10
