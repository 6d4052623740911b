"""Planted bug (S5): features and labels were shuffled separately, so labels do not belong to inputs."""

import torch
from _doctor_common import digits_tensors, small_cnn
from torch.utils.data import TensorDataset

import danlu


class ShuffledLabels(danlu.Recipe):
    lr: float = 3e-3
    batch_size: int = 32

    def data(self):
        x, y = digits_tensors(600)
        x = x[torch.randperm(len(x))]   # BUG: a second permutation for the labels is missing
        return TensorDataset(x[150:], y[150:]), TensorDataset(x[:150], y[:150])

    def model(self):
        return small_cnn()
