"""Planted bug (S11, data content): noise drawn from an unseeded NumPy generator in __getitem__."""

import numpy as np
import torch
from _doctor_common import digits_split, small_cnn
from torch.utils.data import Dataset

import danlu


class Jitter(Dataset):
    def __init__(self, base):
        self.base = base
        self.rng = np.random.default_rng()  # BUG: not seeded from the recipe's seed

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return x + torch.from_numpy(self.rng.normal(0, 0.1, x.shape).astype("float32")), y


class NondeterministicData(danlu.Recipe):
    def data(self):
        train, val = digits_split(300, 100)
        return Jitter(train), val

    def model(self):
        return small_cnn()
