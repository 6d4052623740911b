"""Diverging: the one definition every part of danlu uses (T2, T4).

A loss *diverges* when its smoothed level stands at least DIVERGE_RATIO times above its
best smoothed level **and** has given back at least DIVERGE_OF_LEARNED of what it had
learned (start - best), so that 0.001 -> 0.002 at the end of a good run is not a
divergence while 0.3 -> 2.0 is. (Losses that are not positive are compared on the
difference alone.)

- :func:`diverged` is the test on one level; the curve rule "diverging"
  (danlu.curves.rules) applies it to a whole smoothed curve and asks that it hold for
  DIVERGE_MIN_POINTS trailing points.
- :class:`Tripwire` applies it online to a bias-corrected EMA of the loss, step by step:
  the live diagnosis uses it to re-read the curves at once, the LR range test to stop
  its sweep, and a study to stop a trial that blew up.
"""

from __future__ import annotations

import math

__all__ = ["DIVERGE_RATIO", "DIVERGE_OF_LEARNED", "DIVERGE_MIN_POINTS", "EMA_BETA", "diverged", "Tripwire"]

#: The smoothed loss stands this many times above its best...
DIVERGE_RATIO = 1.5
#: ...and gives back at least this fraction of what was learned (start - best)...
DIVERGE_OF_LEARNED = 0.25
#: ...for at least this many consecutive (binned) points, when a whole curve is read.
DIVERGE_MIN_POINTS = 5
#: EMA factor of the online smoothing (about the last 10 steps).
EMA_BETA = 0.9


def diverged(level: float, best: float, start: float) -> bool:
    """Whether a smoothed loss `level` has diverged from its `best`, having started at `start`."""
    if not math.isfinite(level):
        return True
    learned = max(start - best, 0.0)
    rise = level - best
    if best > 0:
        return level >= DIVERGE_RATIO * best and rise >= DIVERGE_OF_LEARNED * learned
    return rise > 0 and rise >= max(DIVERGE_OF_LEARNED * learned, (DIVERGE_RATIO - 1) * abs(best))


class Tripwire:
    """Online divergence test on a loss, one value per step (after `warmup` values)."""

    def __init__(self, warmup: int = 5) -> None:
        self.warmup = max(1, int(warmup))
        self.n = 0
        self._ema = 0.0
        self.start = math.nan
        self.best = math.inf
        self.level = math.nan

    def update(self, loss: float) -> bool:
        """Add a value; True when the smoothed loss has diverged (a non-finite loss is divergence)."""
        if not math.isfinite(loss):
            return True
        self.n += 1
        self._ema = EMA_BETA * self._ema + (1 - EMA_BETA) * loss
        self.level = self._ema / (1 - EMA_BETA ** self.n)
        if self.n == 1:
            self.start = self.level
        tripped = self.n > self.warmup and diverged(self.level, self.best, self.start)
        self.best = min(self.best, self.level)
        return tripped
