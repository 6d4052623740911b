"""Planted bug (S8): a layer is defined but its output never reaches the loss."""

from _doctor_common import digits_split
from torch import nn

import danlu


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.extra = nn.Linear(32, 32)  # BUG: defined, never used
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        h = self.body(x)
        _ = self.extra(h.detach())  # its result is thrown away (and detached)
        return self.head(h)


class UnusedParam(danlu.Recipe):
    def data(self):
        return digits_split(300, 100)

    def model(self):
        return Net()
