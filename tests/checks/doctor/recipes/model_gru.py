"""Clean, real architecture: a GRU sequence classifier (the last hidden state to 3 classes) on noisy
waves of three frequencies, at the default learning rate (a slow learner)."""

import math

import torch
from torch import nn
from torch.utils.data import TensorDataset

import danlu


def waves(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    t = torch.arange(32, dtype=torch.float32)
    phase = torch.rand(n, 1, generator=g) * 2 * math.pi
    x = torch.sin((1 + y[:, None].float()) * 0.3 * t + phase) + 0.3 * torch.randn(n, 32, generator=g)
    return x.unsqueeze(-1), y


class GRUNet(nn.Module):
    def __init__(self, hidden=32, classes=3):
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        _, h = self.gru(x)
        return self.head(h[-1])


class GRUWaves(danlu.Recipe):
    batch_size: int = 32
    epochs: int = 3

    def data(self):
        x, y = waves(600, 0)
        return TensorDataset(x[150:], y[150:]), TensorDataset(x[:150], y[:150])

    def model(self):
        return GRUNet()
