"""Planted bug (S6): functional dropout without training=self.training stays on in eval mode."""

import torch.nn.functional as F
from _doctor_common import digits_split
from torch import nn

import danlu


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        h = F.relu(self.fc1(x.flatten(1)))
        h = F.dropout(h, 0.5)  # BUG: training defaults to True, also in eval mode
        return self.fc2(h)


class DropoutMisuse(danlu.Recipe):
    def data(self):
        return digits_split(300, 100)

    def model(self):
        return nn.Sequential(nn.Identity(), Head())
