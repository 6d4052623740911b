"""Planted bug (D4): raw 0-255 pixel values, never normalised."""

from _doctor_common import digits_split, small_cnn
from torch.utils.data import TensorDataset

import danlu


class RawPixels(danlu.Recipe):
    def data(self):
        train, val = digits_split(300, 100, raw=True)
        scale = 255.0 / 16.0  # as if read from 8-bit images
        return (TensorDataset(train.tensors[0] * scale, train.tensors[1]),
                TensorDataset(val.tensors[0] * scale, val.tensors[1]))

    def model(self):
        return small_cnn()
