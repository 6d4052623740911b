"""Planted bug (S8): the optimizer is built from the body's parameters only; the head never trains."""

import torch
from _doctor_common import digits_split
from torch import nn

import danlu


class MissingFromOptimizer(danlu.Recipe):
    def data(self):
        return digits_split(300, 100)

    def model(self):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def optimizer(self, params):
        params = list(params)
        return torch.optim.AdamW(params[:2], lr=self.lr)  # BUG: drops the last layer's weight and bias
