"""Clean, real architecture: a per-pixel segmentation head (output [B, C, H, W], targets [B, H, W]) on
synthetic images of a square (class 1) and a disc (class 2) in noise."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import danlu


def shapes(n: int, seed: int, side: int = 16):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    x = 0.3 * torch.randn(n, 1, side, side, generator=g)
    y = torch.zeros(n, side, side, dtype=torch.int64)
    for i in range(n):
        cy, cx = torch.randint(4, side - 4, (2,), generator=g).tolist()
        if i % 2:
            mask = (yy - cy).abs().le(3) & (xx - cx).abs().le(3)
            y[i][mask] = 1
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= 9
            y[i][mask] = 2
        x[i, 0][mask] += 1.0 + 0.5 * (i % 2)
    return x, y


class Segmenter(danlu.Recipe):
    lr: float = 3e-3
    batch_size: int = 16
    epochs: int = 3

    def data(self):
        x, y = shapes(320, 0)
        return TensorDataset(x[80:], y[80:]), TensorDataset(x[:80], y[:80])

    def model(self):
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(16, 3, 1))
