"""Randomness by design (S6 warns, does not fail): MC dropout written with training=True; with
`explicit=false` the same F.dropout is left at its default, the classic bug (S6 fails)."""

import torch.nn.functional as F
from _doctor_common import digits_split
from torch import nn

import danlu


class Net(nn.Module):
    def __init__(self, explicit: bool):
        super().__init__()
        self.explicit = explicit
        self.fc1, self.fc2 = nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x):
        h = F.relu(self.fc1(x.flatten(1)))
        if self.explicit:
            h = F.dropout(h, 0.2, training=True)   # MC dropout: on in eval too, on purpose
        else:
            h = F.dropout(h, 0.2)                  # BUG: training defaults to True
        return self.fc2(h)


class McDropout(danlu.Recipe):
    explicit: bool = True

    def data(self):
        return digits_split(300, 100)

    def model(self):
        return Net(self.explicit)
