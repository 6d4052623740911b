"""Planted bug (S5): the target reaches the forward pass (a one-hot copy of the label is fed
beside the image), so the model needs no input; with leak=false the same model is clean."""

import torch
from _doctor_common import digits_split
from torch import nn
from torch.nn import functional as F

import danlu


class TargetLeak(danlu.Recipe):
    leak: bool = True
    lr: float = 3e-3
    batch_size: int = 32

    def data(self):
        return digits_split(400, 200)

    def model(self):
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, model, batch):
        x, y = batch
        extra = F.one_hot(y, 10).float() if self.leak else torch.zeros(len(y), 10)   # BUG when leak
        return model(torch.cat([x.flatten(1), extra], dim=1)), y
