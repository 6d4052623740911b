"""Clean: batch-norm and dropout used correctly (BN after each conv, dropout before the head)."""

from _doctor_common import digits_split, small_cnn

import danlu


class CleanBN(danlu.Recipe):
    lr: float = 3e-3
    batch_size: int = 32

    def data(self):
        return digits_split(600, 150)

    def model(self):
        return small_cnn(dropout=0.2, batchnorm=True)
