"""Planted bug (S1): a 4M-parameter MLP as the first model for 8x8 digits."""

from _doctor_common import digits_split
from torch import nn

import danlu


class BigModel(danlu.Recipe):
    hidden: int = 1400

    def data(self):
        return digits_split(300, 100)

    def model(self):
        h = self.hidden
        return nn.Sequential(nn.Flatten(), nn.Linear(64, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                             nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 10))
