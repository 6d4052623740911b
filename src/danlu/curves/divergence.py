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
  its sweep, and a study to stop a trial that blew up. It acts at once, before it can
  see how a rise ends, so while the loss has learned nothing yet (its best is within
  NOTHING_LEARNED of where it started) only a blow-up, BLOWUP_RATIO times its start or
  best, trips it: Adam's first steps at a high learning rate often lift a healthy loss
  2-5x for a few steps before it falls (seen: a Gaussian NLL whose smoothed level went
  from 0.25 to 1.2 by step 3 and below 0 by step 13), while a loss that explodes passes
  8x within steps.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

__all__ = ["DIVERGE_RATIO", "DIVERGE_OF_LEARNED", "DIVERGE_MIN_POINTS", "EMA_BETA", "BLOWUP_RATIO",
           "NOTHING_LEARNED", "NOISE_MULT", "diverged", "blown_up", "Tripwire"]

#: The smoothed loss stands this many times above its best...
DIVERGE_RATIO = 1.5
#: ...and gives back at least this fraction of what was learned (start - best)...
DIVERGE_OF_LEARNED = 0.25
#: ...for at least this many consecutive (binned) points, when a whole curve is read.
DIVERGE_MIN_POINTS = 5
#: EMA factor of the online smoothing (about the last 10 steps).
EMA_BETA = 0.9
#: Online, before anything was learned, a rise trips only at this many times the best level...
BLOWUP_RATIO = 8.0
#: ...where "nothing learned" means the best level is within this fraction of the start's.
NOTHING_LEARNED = 0.05
#: Online, a rise must also stand this many times the loss's spread (mean absolute deviation of a
#: step's loss from the level) above the best: at 2, small noisy models of the diabetes task in
#: benchmarks/study_efficiency.py that only wobbled (1.0 -> 0.55, then 0.5-0.7) were stopped.
NOISE_MULT = 3.0


def diverged(level: float, best: float, start: float) -> bool:
    """Whether a smoothed loss `level` has diverged from its `best`, having started at `start`."""
    if not math.isfinite(level):
        return True
    learned = max(start - best, 0.0)
    rise = level - best
    if best > 0:
        return level >= DIVERGE_RATIO * best and rise >= DIVERGE_OF_LEARNED * learned
    return rise > 0 and rise >= max(DIVERGE_OF_LEARNED * learned, (DIVERGE_RATIO - 1) * abs(best))


def blown_up(level: float, best: float) -> bool:
    """Whether `level` stands BLOWUP_RATIO times above `best` (for a best below 0: above it by
    BLOWUP_RATIO - 1 times its size; for a best of exactly 0: by 1)."""
    if not math.isfinite(level):
        return True
    if best > 0:
        return level >= BLOWUP_RATIO * best
    return level - best >= ((BLOWUP_RATIO - 1) * abs(best) if best else 1.0)


class Tripwire:
    """Online divergence test on a loss, one value per step: judged from the `warmup`+1-th value on,
    against the best level of at least `warmup` values (a level of fewer is one or two noisy
    batches, and falling from it would be noise). The level judged is the smaller of the
    smoothed loss and the median of the last `warmup` losses, so that one batch's spike is not
    a divergence however high it goes (seen: a healthy NLL at 70x its start for one step,
    learning after). A rise counts only when it also stands
    NOISE_MULT times the loss's step-to-step spread above that best: near 0 (a Gaussian NLL
    crossing it, a loss that learned little so far) a ratio of levels is noise."""

    def __init__(self, warmup: int = 5) -> None:
        self.warmup = max(1, int(warmup))
        self.n = 0
        self._ema = 0.0
        self._spread = 0.0
        self.start = math.nan
        self.best = math.inf
        self.level = math.nan
        self._recent: deque[float] = deque(maxlen=self.warmup)
        self.noise = 0.0   # the spread of the raw loss around its level where the best was set

    def update(self, loss: float) -> bool:
        """Add a value; True when the smoothed loss has diverged (a non-finite loss is divergence)."""
        if not math.isfinite(loss):
            return True
        if self.n:
            self._spread = EMA_BETA * self._spread + (1 - EMA_BETA) * abs(loss - self.level)
        self.n += 1
        self._ema = EMA_BETA * self._ema + (1 - EMA_BETA) * loss
        self.level = self._ema / (1 - EMA_BETA ** self.n)
        if self.n == 1:
            self.start = self.level
        self._recent.append(loss)
        tripped = False
        if self.n > self.warmup:
            # one batch's spike lifts the average for many steps, not the median of the last few
            level = min(self.level, statistics.median(self._recent))
            if self.start - self.best <= NOTHING_LEARNED * abs(self.start):   # nothing learned yet
                # from the start (which has no spread to measure) or from a best below it
                ref, noise = (self.best, self.noise) if self.best < self.start else (self.start, 0.0)
                tripped = blown_up(level, ref) and level - ref > NOISE_MULT * noise
            else:
                tripped = diverged(level, self.best, self.start) and level - self.best > NOISE_MULT * self.noise
        if self.n >= self.warmup and self.level < self.best:   # of fewer losses, a level is one noisy batch
            self.best = self.level
            self.noise = self._spread / (1 - EMA_BETA ** (self.n - 1))
        return tripped
