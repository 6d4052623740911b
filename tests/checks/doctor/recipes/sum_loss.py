"""Planted bug (S7, S4): the loss sums over the batch instead of averaging."""

import torch.nn.functional as F
from _doctor_common import digits_split, small_cnn

import danlu


class SumLoss(danlu.Recipe):
    def data(self):
        return digits_split(300, 100)

    def model(self):
        return small_cnn()

    def loss(self, output, target):
        return F.cross_entropy(output, target, reduction="sum")  # BUG: scales with the batch size
