"""Planted bug (S7): a mean-and-variance head whose hand-written Gaussian NLL compares mean [B,1] with
target [B]: the loss broadcasts to [B,B] and pulls every sample toward every target."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import danlu


class GaussianNllBroadcast(danlu.Recipe):
    task = "regression"

    def data(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(400, 8, generator=g)
        y = x[:, 0] - 0.5 * x[:, 1] + 0.1 * torch.randn(400, generator=g)
        return TensorDataset(x[:300], y[:300]), TensorDataset(x[300:], y[300:])

    def model(self):
        return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))

    def loss(self, output, target):
        mean, log_var = output[:, :1], output[:, 1:]
        return 0.5 * (log_var + (target - mean) ** 2 / log_var.exp()).mean()  # BUG: [B,1] vs [B]
