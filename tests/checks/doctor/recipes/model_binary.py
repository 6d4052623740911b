"""Clean, real set-up: a binary MLP with one logit, float 0/1 targets and BCE-with-logits (no task declared),
on scikit-learn's breast-cancer data."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import danlu


class BinaryMLP(danlu.Recipe):
    batch_size: int = 32
    epochs: int = 3

    def data(self):
        from sklearn.datasets import load_breast_cancer

        d = load_breast_cancer()
        x = torch.tensor(d.data, dtype=torch.float32)
        y = torch.tensor(d.target, dtype=torch.float32)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        x, y = x[order], y[order]
        x = (x - x[120:].mean(0)) / x[120:].std(0)
        return TensorDataset(x[120:], y[120:]), TensorDataset(x[:120], y[:120])

    def model(self):
        return nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 1))

    def loss(self, output, target):
        return F.binary_cross_entropy_with_logits(output.squeeze(-1), target)

    def metrics(self, output, target):
        return {"acc": float(((output.squeeze(-1) > 0).float() == target).float().mean())}
