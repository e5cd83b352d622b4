#!/usr/bin/python3
"""Makes the torchvision peer models for the ONNX tests (test fixtures only).

Twelve torchvision 0.14 ImageNet architectures with random weights (fixed
seed; BatchNorm given random statistics so that it is not the identity), in
eval mode, exported by torch.onnx at each opset asked for, with a batch of 1
and PyTorch's own outputs (ShuffleNet also with a symbolic batch, batch 2):

    OUT/tv_<name>_op<opset>.onnx  OUT/tv_<name>_x.npy  OUT/tv_<name>_y.npy

Input sizes are kept small where the net allows (64x64); AlexNet and VGG end
in adaptive pooling to 6x6 and 7x7 that torch.onnx can only export when the
feature map already has that size, so they take 224x224.

Usage: tv_models.py OUT_DIR [--opsets 13,17] [--models resnet18,...]
"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn
import torchvision.models as tvm

MODELS = {
    'resnet18': 64, 'mobilenet_v2': 64, 'squeezenet1_1': 64, 'densenet121': 64,
    'googlenet': 64, 'alexnet': 224, 'vgg11_bn': 224, 'regnet_x_400mf': 64,
    'efficientnet_b0': 64, 'mobilenet_v3_small': 64, 'mnasnet0_5': 64, 'shufflenet_v2_x0_5': 64,
    # The same ShuffleNet with a symbolic batch (batch 2 here): its shape
    # subgraphs then carry the batch size through to the Reshapes.
    'shufflenet_v2_x0_5_dyn': 64,
}


def build(name):
    name = name[:-4] if name.endswith('_dyn') else name
    kw = {'weights': None}
    if name == 'googlenet':
        kw.update(aux_logits=False, init_weights=True)
    return getattr(tvm, name)(**kw)


def randomize_bn(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('out')
    ap.add_argument('--opsets', default='13,17')
    ap.add_argument('--models', default=','.join(MODELS))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(2)
    for name in a.models.split(','):
        size = MODELS[name]
        torch.manual_seed(1234)
        gen = torch.Generator().manual_seed(99)
        model = build(name)
        with torch.no_grad():
            randomize_bn(model, gen)
        model.eval()
        dyn = name.endswith('_dyn')
        x = torch.randn((2 if dyn else 1, 3, size, size), generator=gen)
        with torch.no_grad():
            y = model(x)
        base = os.path.join(a.out, 'tv_' + name)
        np.save(base + '_x.npy', x.numpy().astype(np.float32))
        np.save(base + '_y.npy', y.numpy().astype(np.float32))
        for opset in a.opsets.split(','):
            torch.onnx.export(model, x, '%s_op%s.onnx' % (base, opset), opset_version=int(opset),
                              input_names=['input'], output_names=['logits'],
                              do_constant_folding=True,
                              dynamic_axes={'input': {0: 'N'}, 'logits': {0: 'N'}} if dyn else None)
        print('tv_models: %s (%d parameters)' % (name, sum(p.numel() for p in model.parameters())))


if __name__ == '__main__':
    main()
