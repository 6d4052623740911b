"""Planted bug (D7): random augmentation (noise and flips) applied to the validation set too."""

import torch
from _doctor_common import digits_split, small_cnn
from torch.utils.data import Dataset

import danlu


class Augmented(Dataset):
    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x + 0.1 * torch.randn_like(x), y


class ValAugmentation(danlu.Recipe):
    def data(self):
        train, val = digits_split(300, 100)
        return Augmented(train), Augmented(val)  # BUG: val gets the training transform

    def model(self):
        return small_cnn()
