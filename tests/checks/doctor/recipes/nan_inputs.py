"""Planted bug (S13/D6, S9 phase data): a few training inputs hold NaN (a division by zero upstream)."""

from _doctor_common import digits_split, small_cnn
from torch.utils.data import TensorDataset

import danlu


class NanInputs(danlu.Recipe):
    batch_size: int = 32

    def data(self):
        train, val = digits_split(300, 100)
        x, y = train.tensors
        x = x.clone()
        x[x.shape[0] // 2:, :, 0, 0] = float("nan")  # half the items: S9 meets one in its first batch
        return TensorDataset(x, y), val

    def model(self):
        return small_cnn()
