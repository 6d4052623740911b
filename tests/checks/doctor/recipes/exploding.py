"""Planted bug (S8): a deep MLP initialised with N(0, 1) weights; gradients explode toward the input."""

import torch
from _doctor_common import digits_split
from torch import nn

import danlu


class Exploding(danlu.Recipe):
    depth: int = 6

    def data(self):
        return digits_split(300, 100)

    def model(self):
        layers = [nn.Flatten(), nn.Linear(64, 64), nn.ReLU()]
        for _ in range(self.depth):
            layers += [nn.Linear(64, 64), nn.ReLU()]
        net = nn.Sequential(*layers, nn.Linear(64, 10))
        for m in net.modules():
            if isinstance(m, nn.Linear):
                torch.nn.init.normal_(m.weight, std=1.0)  # BUG: should scale with 1/sqrt(fan_in)
        return net
