"""Planted bug (S10): view() used where permute() was meant mixes the samples of a batch."""

from _doctor_common import digits_split
from torch import nn

import danlu


class RowRNN(nn.Module):
    """Reads an 8x8 digit row by row with a GRU (which wants [T, B, F])."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(8, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        b = x.shape[0]
        rows = x.reshape(b, 8, 8)             # [B, T, F]
        seq = rows.view(8, b, 8)              # BUG: should be rows.permute(1, 0, 2)
        _, h = self.rnn(seq)
        return self.head(h[-1])


class BatchMixing(danlu.Recipe):
    def data(self):
        return digits_split(300, 100)

    def model(self):
        return RowRNN()
