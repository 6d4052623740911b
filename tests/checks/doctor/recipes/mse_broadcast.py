"""Planted bug (S7): regression output [B,1] against target [B] in F.mse_loss broadcasts to [B,B]."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import danlu


class MseBroadcast(danlu.Recipe):
    def data(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(400, 8, generator=g)
        y = x[:, 0] - 0.5 * x[:, 1] + 0.1 * torch.randn(400, generator=g)
        return TensorDataset(x[:300], y[:300]), TensorDataset(x[300:], y[300:])

    def model(self):
        return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))

    def loss(self, output, target):
        return F.mse_loss(output, target)  # BUG: [B,1] vs [B]
