"""Planted bug (S11, model init): the last layer is initialised from an unseeded NumPy generator."""

import numpy as np
import torch
from _doctor_common import digits_split, small_cnn

import danlu


class NondeterministicInit(danlu.Recipe):
    def data(self):
        return digits_split(300, 100)

    def model(self):
        net = small_cnn()
        last = net[-1]
        rng = np.random.default_rng()  # BUG: a fresh, unseeded generator
        with torch.no_grad():
            last.weight.copy_(torch.from_numpy(rng.normal(0, 0.05, tuple(last.weight.shape)).astype("float32")))
        return net
