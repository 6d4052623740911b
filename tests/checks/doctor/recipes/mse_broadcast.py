"""Planted bug (S7): regression output [B,1] against target [B] in F.mse_loss broadcasts to [B,B]."""

import torch.nn.functional as F
from _doctor_common import linear_regression_split
from torch import nn

import danlu


class MseBroadcast(danlu.Recipe):
    def data(self):
        return linear_regression_split()

    def model(self):
        return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))

    def loss(self, output, target):
        return F.mse_loss(output, target)  # BUG: [B,1] vs [B]
