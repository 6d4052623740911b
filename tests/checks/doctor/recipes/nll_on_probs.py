"""Planted bug (S4, S7): nll_loss applied to softmax probabilities (log_softmax was meant)."""

import torch.nn.functional as F
from _doctor_common import digits_split, small_cnn
from torch import nn

import danlu


class NllOnProbs(danlu.Recipe):
    def data(self):
        return digits_split(300, 100)

    def model(self):
        return nn.Sequential(small_cnn(), nn.Softmax(dim=1))

    def loss(self, output, target):
        return F.nll_loss(output, target)  # BUG: needs log-probabilities
