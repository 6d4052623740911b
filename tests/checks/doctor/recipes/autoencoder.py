"""An autoencoder written as pytorch/examples' VAE trains it: the dataset gives (image, label), and
forward makes the target from the input (the label is not used). Clean by default.

- bug="blind": the decoder reads a learned code that ignores the image (left from a test of
  the decoder alone): the output never depends on the input (S5 must fail).
"""

import torch
import torch.nn.functional as F
from _doctor_common import digits_split
from torch import nn

import danlu


class AutoEncoder(nn.Module):
    def __init__(self, blind: bool, d=64, z=8):
        super().__init__()
        self.blind = blind
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, z))
        self.dec = nn.Sequential(nn.Linear(z, 64), nn.ReLU(), nn.Linear(64, d))
        self.code = nn.Parameter(torch.zeros(1, z)) if blind else None

    def forward(self, x):
        z = self.enc(x)
        if self.code is not None:
            z = self.code.expand_as(z) + 0 * z     # BUG: meant the encoder's code
        return self.dec(z)


class DigitsAutoEncoder(danlu.Recipe):
    lr: float = 3e-3
    batch_size: int = 32
    epochs: int = 3
    task = "regression"
    bug: str = "none"

    def data(self):
        train, val = digits_split(600, 150, raw=True)
        for split in (train, val):
            split.tensors = (split.tensors[0] / 16.0, split.tensors[1])    # pixels in [0, 1]
        return train, val

    def model(self):
        return AutoEncoder(blind=self.bug == "blind")

    def forward(self, model, batch):
        x, _ = batch
        return model(x), x.flatten(1)           # the target is the input

    def loss(self, output, target):
        return F.mse_loss(output, target)
