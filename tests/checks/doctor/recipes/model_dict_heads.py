"""Clean: a model that returns a dict of two heads, trained with a loss over both (no check may crash)."""

import torch.nn.functional as F
from _doctor_common import digits_split
from torch import nn

import danlu


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU())
        self.digit, self.parity = nn.Linear(64, 10), nn.Linear(64, 2)

    def forward(self, x):
        h = self.body(x)
        return {"digit": self.digit(h), "parity": self.parity(h)}


class DictHeads(danlu.Recipe):
    lr: float = 3e-3

    def data(self):
        return digits_split(400, 100)

    def model(self):
        return TwoHeads()

    def loss(self, output, target):
        return F.cross_entropy(output["digit"], target) + 0.5 * F.cross_entropy(output["parity"], target % 2)

    def metrics(self, output, target):
        return {"acc": float((output["digit"].argmax(1) == target).float().mean())}
