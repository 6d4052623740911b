"""danlu's default demo: handwritten digits (scikit-learn's bundled 8x8 set, no download).

    danlu train examples/digits.py            # ~97% validation accuracy in seconds on a CPU
    danlu train examples/digits.py lr=1e-3 hidden=128 -m "wider head"
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

import danlu


def load_digits_split(val_fraction: float = 0.2):
    """Digits as standardised 1x8x8 float tensors and int64 labels, split 80/20 once for all seeds."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)  # N x 1 x 8 x 8, values 0..16
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = np.random.RandomState(1234).permutation(len(y))  # fixed split: val never moves between runs
    n_val = int(len(y) * val_fraction)
    val_idx, train_idx = torch.as_tensor(order[:n_val]), torch.as_tensor(order[n_val:])
    mean, std = x[train_idx].mean(), x[train_idx].std()  # D4: statistics from the training split only
    x = (x - mean) / std
    return TensorDataset(x[train_idx], y[train_idx]), TensorDataset(x[val_idx], y[val_idx])


class Digits(danlu.Recipe):
    hidden: int = 64          # width of the classifier head
    channels: int = 16        # width of the first convolution
    dropout: float = 0.1
    lr: float = 3e-3
    epochs: int = 12

    def data(self):
        return load_digits_split()

    def model(self) -> nn.Module:
        c = self.channels
        return nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),                                   # 2c x 4 x 4
            nn.Flatten(),
            nn.Linear(2 * c * 16, self.hidden), nn.ReLU(),
            nn.Dropout(self.dropout),
            nn.Linear(self.hidden, 10),
        )
