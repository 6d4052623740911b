"""Clean, real set-up: a regression MLP that predicts a mean and a variance per sample, trained with
PyTorch's Gaussian NLL (losses go below 0; output [B, 2] against target [B, 1] by design)."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import danlu


class DiabetesGaussianNLL(danlu.Recipe):
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 3
    task = "regression"

    def data(self):
        from sklearn.datasets import load_diabetes

        d = load_diabetes()
        x = torch.tensor(d.data, dtype=torch.float32)
        y = torch.tensor(d.target, dtype=torch.float32)
        x = (x - x[100:].mean(0)) / x[100:].std(0)
        y = ((y - y[100:].mean()) / y[100:].std()).unsqueeze(-1)
        return TensorDataset(x[100:], y[100:]), TensorDataset(x[:100], y[:100])

    def model(self):
        return nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 2))

    def loss(self, output, target):
        mean, log_var = output[:, :1], output[:, 1:]
        return F.gaussian_nll_loss(mean, target, log_var.exp())
