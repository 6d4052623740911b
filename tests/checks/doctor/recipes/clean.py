"""Clean: a digits-like recipe (1x8x8 standardised inputs, int64 labels, small CNN with dropout).

Every check must stay quiet on it (no warn, no fail).
"""

from _doctor_common import digits_split, small_cnn

import danlu


class Clean(danlu.Recipe):
    lr: float = 3e-3
    batch_size: int = 32
    dropout: float = 0.1

    def data(self):
        return digits_split(600, 150)

    def model(self):
        return small_cnn(dropout=self.dropout)
