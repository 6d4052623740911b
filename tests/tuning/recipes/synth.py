"""A synthetic recipe for study tests: its validation loss is set by its hyperparameters.

val loss = (trained MSE, shrinking with steps) + 10 (a - 0.3)^2  [+ 10 (b - 0.7)^2 + 10 (c - 0.2)^2 when sens=1]

So `a` alone matters (b, c are inert) unless `sens=1` plants a hypersensitive model (H5).
`a >= explode` makes the loss grow every step (a diverging trial); `a <= nan_below` gives NaN.
"""

import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

import danlu


class Synth(danlu.Recipe):
    a: float = 0.5
    b: float = 0.5
    c: float = 0.5
    sens: int = 0
    explode: float = 2.0
    nan_below: float = -1.0
    width: int = 4
    delay: float = 0.0        # seconds of sleep per training step (to kill a study mid-trial)
    gate: str = ""            # a folder: the first trial in each process waits there for a second process
    epochs: int = 2
    batch_size: int = 8
    lr: float = 0.05
    probe_every: int = 1
    patience: int = 0
    task = "regression"

    def data(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(48, 2, generator=g)
        y = (x @ torch.tensor([[0.5], [-0.3]])).squeeze(1)
        return TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:])

    def model(self):
        self._calls = 0
        return nn.Linear(2, self.width)

    def penalty(self) -> float:
        p = 10 * (self.a - 0.3) ** 2
        if self.sens:
            p += 10 * (self.b - 0.7) ** 2 + 10 * (self.c - 0.2) ** 2
        return p

    def loss(self, output, target):
        self._calls = getattr(self, "_calls", 0) + 1
        if self.gate:
            _meet_another_process(Path(self.gate))
        if self.delay and torch.is_grad_enabled():
            time.sleep(self.delay)
        mse = F.mse_loss(output.mean(dim=1), target)
        value = mse + self.penalty()
        if self.a >= self.explode:
            value = value * (10.0 ** self._calls)
        if self.a <= self.nan_below:
            value = value * float("nan")
        return value

    def metrics(self, output, target):
        return {}


_met = False


def _meet_another_process(gate: Path, timeout: float = 120.0) -> None:
    """Block this process's first training step until a second process reached its own,
    so a test of shared storage knows both ran a trial, however slowly either started."""
    global _met
    if _met:
        return
    gate.mkdir(parents=True, exist_ok=True)
    (gate / str(os.getpid())).touch()
    deadline = time.time() + timeout
    while len(list(gate.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.05)
    _met = True
