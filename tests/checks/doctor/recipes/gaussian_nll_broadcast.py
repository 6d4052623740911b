"""Planted bug (S7): a mean-and-variance head whose hand-written Gaussian NLL compares mean [B,1] with
target [B]: the loss broadcasts to [B,B] and pulls every sample toward every target."""

from _doctor_common import linear_regression_split
from torch import nn

import danlu


class GaussianNllBroadcast(danlu.Recipe):
    task = "regression"

    def data(self):
        return linear_regression_split()

    def model(self):
        return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))

    def loss(self, output, target):
        mean, log_var = output[:, :1], output[:, 1:]
        return 0.5 * (log_var + (target - mean) ** 2 / log_var.exp()).mean()  # BUG: [B,1] vs [B]
