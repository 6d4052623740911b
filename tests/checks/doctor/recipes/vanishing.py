"""Planted bug (S8): a deep stack of sigmoid layers; the gradient vanishes toward the input."""

from _doctor_common import digits_split
from torch import nn

import danlu


class Vanishing(danlu.Recipe):
    depth: int = 10

    def data(self):
        return digits_split(300, 100)

    def model(self):
        layers = [nn.Flatten(), nn.Linear(64, 32), nn.Sigmoid()]
        for _ in range(self.depth):
            layers += [nn.Linear(32, 32), nn.Sigmoid()]
        return nn.Sequential(*layers, nn.Linear(32, 10))
