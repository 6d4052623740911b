"""Planted bug (S12): a slow __getitem__ (a sleep standing in for decoding a file) in the main process."""

import time

from _doctor_common import digits_split
from torch import nn
from torch.utils.data import Dataset

import danlu


def decode_image(x):
    time.sleep(0.005)  # BUG: stands in for reading and decoding a file on every access
    return x


class SlowDigits(Dataset):
    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return decode_image(x), y


class SlowGetitem(danlu.Recipe):
    batch_size: int = 16

    def data(self):
        train, val = digits_split(200, 50)
        return SlowDigits(train), val

    def model(self):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
