"""Planted bug (S5): forward computes features from x but the head reads a stale buffer instead."""

import torch
from _doctor_common import digits_split
from torch import nn

import danlu


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.head = nn.Linear(32, 10)
        self.register_buffer("features", torch.zeros(1, 32))

    def forward(self, x):
        feats = self.body(x)
        return self.head(self.features.expand(len(x), -1) + 0 * feats)  # BUG: meant self.head(feats)


class IgnoresInput(danlu.Recipe):
    lr: float = 3e-3
    batch_size: int = 32

    def data(self):
        return digits_split(600, 150)

    def model(self):
        return Net()
