"""Clean, real set-up: a regression MLP on scikit-learn's diabetes data (standardised inputs and targets)."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import danlu


class DiabetesMLP(danlu.Recipe):
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 3

    def data(self):
        from sklearn.datasets import load_diabetes

        d = load_diabetes()
        x = torch.tensor(d.data, dtype=torch.float32)
        y = torch.tensor(d.target, dtype=torch.float32)
        x = (x - x[100:].mean(0)) / x[100:].std(0)
        y = (y - y[100:].mean()) / y[100:].std()
        return TensorDataset(x[100:], y[100:]), TensorDataset(x[:100], y[:100])

    def model(self):
        return nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
