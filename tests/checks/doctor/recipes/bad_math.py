"""Planted bug (S9, forward): log of a negative number (op=log) or a division by zero (op=div).

The offending operation sits in the module named 'features.norm'.
"""

import torch
from _doctor_common import digits_split
from torch import nn

import danlu


class LogScale(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.op = op

    def forward(self, h):
        if self.op == "log":
            return torch.log(h)                       # BUG: h is standardised, half of it is < 0
        return h / (h - h).sum(dim=1, keepdim=True)   # BUG: the denominator is always 0


class BadMath(danlu.Recipe):
    op: str = "log"

    def data(self):
        return digits_split(300, 100)

    def model(self):
        net = nn.Sequential()
        net.add_module("features", nn.Sequential())
        net.features.add_module("flat", nn.Flatten())
        net.features.add_module("norm", LogScale(self.op))
        net.add_module("head", nn.Linear(64, 10))
        return net
