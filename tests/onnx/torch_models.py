#!/usr/bin/python3
"""Makes the PyTorch peer models for the ONNX tests (test fixtures only).

For each of LeNet-5, ResNet-20, VGG-16 with BN and MobileNetV2 (CIFAR
variants), a small net of the mobile networks' blocks (MobileTiny), and an
LSTM and a GRU sequence classifier (issue 15), it
builds the network with a fixed seed, gives every BatchNorm random running
statistics and affine parameters (so BN is not the
identity), exports it with torch.onnx at one or more opsets, and writes a
random input batch and PyTorch's own eval-mode outputs:

    OUT/<name>_op<opset>.onnx  OUT/<name>_x.npy  OUT/<name>_y.npy

Usage: torch_models.py OUT_DIR [--opsets 9,13,17] [--models lenet5,resnet20,...]
"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.dropout(F.relu(self.fc2(x)), 0.5, self.training)
        return self.fc3(x)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.short is None else self.short(x)))


class ResNet20(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                layers.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layers(F.relu(self.bn(self.conv(x))))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class VGG16BN(nn.Module):
    CFG = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M']

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for v in self.CFG:
            if v == 'M':
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(512, 512), nn.ReLU(True),
                                        nn.Linear(512, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hid = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU6(True)]
        layers += [nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False), nn.BatchNorm2d(hid),
                   nn.ReLU6(True), nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    # (expand, out, repeats, stride); CIFAR: stride 1 in the stem and first stages.
    CFG = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self):
        super().__init__()
        layers = [nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(True)]
        cin = 32
        for t, c, n, s in self.CFG:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 10))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class ConvAdd(nn.Module):
    """Biases as separate Adds (Conv + Add, MatMul + Add), as some exporters write them."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, bias=False)
        self.b = nn.Parameter(torch.randn(8, 1, 1) * 0.1)
        self.w = nn.Parameter(torch.randn(8 * 13 * 13, 10) * 0.05)
        self.c = nn.Parameter(torch.randn(10) * 0.1)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x) + self.b), 2)
        return torch.flatten(x, 1) @ self.w + self.c


class MobileTiny(nn.Module):
    """The mobile networks' building blocks in one small net (issue 17): SiLU,
    squeeze-excitation with HardSigmoid, the channel shuffle and chunk from
    x.size(), HardSwish, Sigmoid with scalar constants, and a spatial mean."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = nn.Conv2d(8, 4, 1)
        self.fc2 = nn.Conv2d(4, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.silu(self.c1(x))
        x = x * F.hardsigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        b, c, h, w = x.size()
        x = x.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, -1, h, w)
        a, y = x.chunk(2, dim=1)
        x = torch.cat([F.hardswish(a), torch.sigmoid(y) / 2.0 - 0.1], 1)
        return self.fc(x.mean([2, 3]))


class SeqRNN(nn.Module):
    """Issue 15: nn.LSTM or nn.GRU (batch_first, 28 steps of 28 features, 32
    units) whose last step feeds a Linear, the sequential Fashion-MNIST
    classifier. torch.onnx writes it as Transpose -> LSTM/GRU (zero initial
    states from ConstantOfShape) -> Squeeze -> Transpose -> Gather -> Gemm."""

    def __init__(self, cell):
        super().__init__()
        self.rnn = (nn.LSTM if cell == 'lstm' else nn.GRU)(28, 32, batch_first=True)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y[:, -1, :])


class LSTMSeq(SeqRNN):
    def __init__(self):
        super().__init__('lstm')


class GRUSeq(SeqRNN):
    def __init__(self):
        super().__init__('gru')


MODELS = {
    'lenet5': (LeNet5, (1, 28, 28)),
    'resnet20': (ResNet20, (3, 32, 32)),
    'vgg16bn': (VGG16BN, (3, 32, 32)),
    'mobilenetv2': (MobileNetV2, (3, 32, 32)),
    'convadd': (ConvAdd, (1, 28, 28)),
    'mobiletiny': (MobileTiny, (3, 16, 16)),
    'lstmseq': (LSTMSeq, (28, 28)),
    'gruseq': (GRUSeq, (28, 28)),
}


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
    ap.add_argument('--opsets', default='13')
    ap.add_argument('--models', default=','.join(MODELS))
    ap.add_argument('--batch', type=int, default=4)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(2)
    for name in a.models.split(','):
        cls, shape = MODELS[name]
        torch.manual_seed(1234)
        gen = torch.Generator().manual_seed(99)
        model = cls()
        with torch.no_grad():
            randomize_bn(model, gen)
        model.eval()
        x = torch.randn((a.batch,) + shape, generator=gen)
        with torch.no_grad():
            y = model(x)
        np.save(os.path.join(a.out, name + '_x.npy'), x.numpy().astype(np.float32))
        np.save(os.path.join(a.out, name + '_y.npy'), y.numpy().astype(np.float32))
        for opset in a.opsets.split(','):
            path = os.path.join(a.out, '%s_op%s.onnx' % (name, opset))
            torch.onnx.export(model, x, path, opset_version=int(opset), input_names=['input'],
                              output_names=['logits'], dynamic_axes={'input': {0: 'N'}, 'logits': {0: 'N'}},
                              do_constant_folding=True)
        print('torch_models: %s (%d parameters)' % (name, sum(p.numel() for p in model.parameters())))


if __name__ == '__main__':
    main()
