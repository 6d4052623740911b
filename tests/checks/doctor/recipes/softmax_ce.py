"""Planted bug (S7): the model ends with a softmax and the loss is cross_entropy (which applies it again)."""

from _doctor_common import digits_split, small_cnn
from torch import nn

import danlu


class SoftmaxCE(danlu.Recipe):
    lr: float = 3e-3
    batch_size: int = 32

    def data(self):
        return digits_split(300, 100)

    def model(self):
        return nn.Sequential(small_cnn(), nn.Softmax(dim=1))  # BUG: cross_entropy expects logits
