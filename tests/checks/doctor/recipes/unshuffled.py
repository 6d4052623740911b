"""Planted bug (D7): the training loader does not shuffle; with sort=true the data are sorted by class."""

from _doctor_common import digits_split, small_cnn
from torch.utils.data import DataLoader, TensorDataset

import danlu


class Unshuffled(danlu.Recipe):
    sort: bool = True
    batch_size: int = 16

    def data(self):
        train, val = digits_split(300, 100)
        if self.sort:
            x, y = train.tensors
            order = y.argsort(stable=True)
            train = TensorDataset(x[order], y[order])
        return train, val

    def loaders(self, train, val):
        return (DataLoader(train, batch_size=self.batch_size),          # BUG: shuffle=False
                DataLoader(val, batch_size=self.batch_size))

    def model(self):
        return small_cnn()
