"""Planted crash: the forward raises only in training mode, so S13 (eval, batch of 1) passes and
checks that train crash with a frame in this file, while the others still run."""

from _doctor_common import digits_split
from torch import nn

import danlu


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        if self.training:
            x = x.reshape(len(x), 8, 8)[:, :, :4]  # BUG: halves the features in training only
        return self.fc(x.flatten(1))


class CrashTrainForward(danlu.Recipe):
    def data(self):
        return digits_split(300, 100)

    def model(self):
        return Net()
