#!/usr/bin/python3
"""Makes the browser test's second model (a test fixture only): a small CNN
for 1x28x28 images whose convolutions are 3x3, so that a pattern-pruning job
on it has a pattern library for the dashboard to draw. Random weights with
a fixed seed (the job pretrains it), exported by torch.onnx at opset 13.

Usage: make_pattern_onnx.py OUT.onnx
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class Cnn3(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc1 = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc1(torch.flatten(x, 1))


torch.manual_seed(1)
m = Cnn3().eval()
torch.onnx.export(m, torch.zeros(1, 1, 28, 28), sys.argv[1], opset_version=13,
                  input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
