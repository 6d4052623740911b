"""A tiny, fast classification recipe for engine and CLI tests (a few hundred samples, 2 features)."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import danlu


def blobs(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centers = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    x = centers[y] + 0.6 * torch.randn(n, 2, generator=g)
    return TensorDataset(x, y)


class Tiny(danlu.Recipe):
    hidden: int = 16
    dropout: float = 0.1
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-2
    probe_every: int = 5

    def data(self):
        return blobs(192, 1), blobs(64, 2)

    def model(self):
        return nn.Sequential(nn.Linear(2, self.hidden), nn.ReLU(), nn.Dropout(self.dropout),
                             nn.Linear(self.hidden, 3))
