"""Planted bug (S9, backward): an edge-magnitude layer sqrt(dx^2 + dy^2) without an epsilon.

On the blank background of a digit both filter responses are exactly 0: the forward value
sqrt(0) = 0 is fine, but its derivative is infinite and 0 * inf = NaN in the backward pass.
"""

import torch
from _doctor_common import digits_split
from torch import nn
from torch.utils.data import TensorDataset

import danlu


class EdgeMagnitude(nn.Module):
    def __init__(self):
        super().__init__()
        self.dx = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.dy = nn.Conv2d(1, 4, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.sqrt(self.dx(x) ** 2 + self.dy(x) ** 2)  # BUG: needs + 1e-12 inside the sqrt


class SqrtBackward(danlu.Recipe):
    def data(self):
        train, val = digits_split(300, 100, raw=True)
        # pixels in [0, 1]: blank background is exactly 0
        return (TensorDataset(train.tensors[0] / 16, train.tensors[1]),
                TensorDataset(val.tensors[0] / 16, val.tensors[1]))

    def model(self):
        net = nn.Sequential()
        net.add_module("edges", EdgeMagnitude())
        net.add_module("flat", nn.Flatten())
        net.add_module("head", nn.Linear(4 * 64, 10))
        return net
