"""Clean: regression on standardised features, targets of shape [B] (the default loss reshapes [B,1])."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import danlu


def make(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = torch.sin(2 * x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + 0.3 * x[:, 3] + 0.05 * torch.randn(n, generator=g)
    return x, y


class CleanRegression(danlu.Recipe):
    lr: float = 3e-3
    batch_size: int = 32
    hidden: int = 64

    def data(self):
        x, y = make(700, 0)
        mean, std = y[:550].mean(), y[:550].std()
        y = (y - mean) / std
        return TensorDataset(x[:550], y[:550]), TensorDataset(x[550:], y[550:])

    def model(self):
        h = self.hidden
        return nn.Sequential(nn.Linear(8, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))
