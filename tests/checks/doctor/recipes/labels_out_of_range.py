"""Planted bug (S13/D6): 1-based labels 1..10 with a 10-output model."""

from _doctor_common import digits_split, small_cnn
from torch.utils.data import TensorDataset

import danlu


class LabelsOutOfRange(danlu.Recipe):
    def data(self):
        train, val = digits_split(300, 100)
        x, y = train.tensors
        return TensorDataset(x, y + 1), val

    def model(self):
        return small_cnn()
