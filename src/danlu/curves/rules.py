"""One small rule per training regime (T2, T3, T4), behind one small interface, in one registry.

Adding a regime is adding one :class:`DiagnosisRule` subclass decorated with
:func:`register` and one test that plants the regime and a near miss. The registry's
order is the priority order: when several regimes fire, the report's primary regime is
the most severe one, ties going to the one registered first.

Every threshold is a named module constant, listed with its reason in docs/diagnosis.md.
Relative changes are on a log scale for positive losses (0.10 = 10 %), else on a linear
scale divided by the curve's typical magnitude (see danlu.curves.series).
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import numpy as np

from danlu.curves.analysis import Analysis
from danlu.curves.divergence import DIVERGE_MIN_POINTS, DIVERGE_OF_LEARNED, DIVERGE_RATIO
from danlu.curves.series import MK_MIN_POINTS, Curves, baseline_name, median_smooth
from danlu.report import Finding, Status

__all__ = [
    "LATE",
    "DiagnosisRule",
    "register",
    "get_rules",
    "REGIMES",
    "DIVERGE_RATIO",
    "DIVERGE_MIN_POINTS",
    "DIVERGE_OF_LEARNED",
    "RISE_CHANGE",
    "RISE_OF_LEARNED",
    "FLAT_CHANGE",
    "MOVE_CHANGE",
    "BASELINE_MARGIN",
    "LEARNED_MARGIN",
    "OVERFIT_RISE",
    "OVERFIT_MIN_AFTER",
    "STALL_FRACTION",
    "STALL_TRAIN_DROP",
    "STALL_OF_LEARNED",
    "PLATEAU_WINDOW",
    "PLATEAU_MIN_DROP",
    "PLATEAU_MIN_POINTS",
    "TINY_LR",
    "NOISY_WINDOW",
    "NOISY_MEDIAN",
    "NOISY_QUANTILE",
    "NOISY_OF_LEARNED",
    "NOISY_OF_LEVEL",
    "STILL_FALLING",
    "STILL_OF_LEARNED",
    "VAL_STILL_FALLING",
    "LR_FLOOR_RATIO",
    "LR_DECAY_DROP",
    "LR_DECAY_EFFICIENCY",
    "LR_MID_FALL",
    "LR_MID_OF_LEARNED",
    "DATA_BOUND_SHARE",
    "DATA_BOUND_MIN_POINTS",
]

# ----------------------------------------------------------------- thresholds
#: "late": the last quarter of the steps, where end-of-run trends are read.
LATE = 0.75
# diverging: DIVERGE_RATIO, DIVERGE_OF_LEARNED and DIVERGE_MIN_POINTS are danlu.curves.divergence's
# (one definition everywhere); the rule also fires when the loss jumped DIVERGE_RATIO x above its
# start and never got below it again.
#: diverging ("both rising"): consistent rise of the training loss over the last quarter...
RISE_CHANGE = 0.10
#: ...worth at least this fraction of what was learned.
RISE_OF_LEARNED = 0.05
#: a curve is flat when its Theil-Sen change over the window is under this (or inconsistent).
FLAT_CHANGE = 0.05
#: a validation curve "moves" when it changes consistently by at least this much.
MOVE_CHANGE = 0.10
#: data problem: the best validation loss is within this fraction of the majority baseline...
BASELINE_MARGIN = 0.05
#: ...while the training loss got at least this far below the baseline.
LEARNED_MARGIN = 0.10
#: overfitting: validation loss (median of 3) now this far above its best...
OVERFIT_RISE = 0.05
#: ...with at least this many validation points after the best one.
OVERFIT_MIN_AFTER = 2
#: overfitting (stalled): validation's best lies at least this fraction of the run back...
STALL_FRACTION = 0.25
#: ...while the training loss fell at least this much since (relative)...
STALL_TRAIN_DROP = 0.20
#: ...and by at least this fraction of what was learned (a near-zero loss halving is not a gap).
STALL_OF_LEARNED = 0.05
#: plateau: the training loss is flat over this last fraction of the run...
PLATEAU_WINDOW = 0.5
#: ...and fell less than this overall (or still sits at the majority baseline).
PLATEAU_MIN_DROP = 0.10
#: plateau: the rule waits for this many training points (early steps may not move yet).
PLATEAU_MIN_POINTS = 30
#: an LR below this is "tiny": a plateau then means raise the LR, not lower it (T4).
TINY_LR = 1e-5
#: noisy: the last fraction of the run whose step-to-step spread is measured...
NOISY_WINDOW = 0.25
#: ...around a running median of this many steps.
NOISY_MEDIAN = 9
#: noisy: the step-to-step jitter is the NOISY_QUANTILE of |loss - running median of 9 steps|
#: (a quantile, so a few spikes from bad batches do not count; 10 % of steps must jump)...
NOISY_QUANTILE = 0.9
#: ...and it is noisy when that jitter is at least this fraction of what was learned
#: (healthy digits runs: <= 0.013; batch 4-8 runs: 0.13-0.29)...
NOISY_OF_LEARNED = 0.1
#: ...and at least this fraction of the current (smoothed) loss level: the jitter is as big as
#: the loss itself (ordinary multiplicative batch noise of sigma 0.35 gives ~0.8).
NOISY_OF_LEVEL = 1.0
#: still improving: the training loss fell at least this much over the last quarter...
STILL_FALLING = 0.10
#: ...which is at least this fraction of everything it learned (near-zero losses fall "forever")...
STILL_OF_LEARNED = 0.05
#: ...and the validation loss fell at least this much over the last quarter, to its best.
VAL_STILL_FALLING = 0.02
#: LR decay: the LR ended below this fraction of its peak, its last-quarter mean below
#: LR_DECAY_DROP of its third-quarter mean...
LR_FLOOR_RATIO = 0.1
LR_DECAY_DROP = 0.5
#: ...the training loss fell at least this much in the third quarter (relative, and as a
#: fraction of what was learned)...
LR_MID_FALL = 0.05
#: ...(and at least this fraction of what was learned: digits at defaults, 0.016)...
LR_MID_OF_LEARNED = 0.03
#: ...and its progress per unit of LR in the last quarter kept at least this fraction of the
#: third quarter's: the flattening is what the LR decay explains, not convergence.
LR_DECAY_EFFICIENCY = 0.5


class DiagnosisRule(abc.ABC):
    """One training regime.

    Contract: :meth:`check` is pure and cheap (it runs every few steps during training):
    it reads the curves and their analysis and returns a Finding when its regime is
    present, else None. ``analysis`` is None when the run has fewer than
    MIN_TRAIN_POINTS finite training points; most rules then return None.
    The Finding's ``name`` is the rule's ``name`` (the regime), its ``id`` the practice;
    its evidence holds the numbers, and ``since_step`` where the regime began.
    """

    name: ClassVar[str]            # regime, e.g. "overfitting"
    practice: ClassVar[str]        # practice ID, e.g. "T2"
    title: ClassVar[str]           # words for the one-line display
    final_only: ClassVar[bool] = False   # applies to a finished run only (not live)

    @abc.abstractmethod
    def check(self, curves: Curves, analysis: Analysis | None) -> Finding | None:
        """The finding for this regime, or None when it is absent."""

    def finding(self, status: Status, summary: str, evidence: dict, fix: str, cause: str = "") -> Finding:
        """A finding named by the regime's title (what a user reads); the regime key is in evidence["regime"]."""
        return Finding(id=self.practice, name=self.title, status=status, summary=summary,
                       evidence={"regime": self.name, **evidence}, cause=cause, fix=fix)


_RULES: dict[str, DiagnosisRule] = {}


def register(cls: type[DiagnosisRule]) -> type[DiagnosisRule]:
    """Class decorator: add a rule to the registry (registration order = priority)."""
    if cls.name in _RULES:
        raise ValueError(f"a diagnosis rule for regime {cls.name!r} is already registered")
    _RULES[cls.name] = cls()
    return cls


def get_rules(names: list[str] | tuple[str, ...] | None = None) -> list[DiagnosisRule]:
    """Registered rules in priority order, optionally only the named regimes."""
    if names is None:
        return list(_RULES.values())
    unknown = [n for n in names if n not in _RULES]
    if unknown:
        raise KeyError(f"unknown regime(s) {unknown}; known: {', '.join(_RULES)}")
    return [r for n, r in _RULES.items() if n in names]


def _fmt(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else str(x)


def _pct(x: float) -> str:
    return f"{x * 100:+.0f}%"


# ===================================================================== rules
@register
class NanLoss(DiagnosisRule):
    """NaN/Inf in the training or validation loss.

    Why: nothing after the first NaN means anything, and its step localises the cause.
    How: the first non-finite point of each curve (no smoothing: one is enough).
    Fix (T4): LR ÷10, gradient clipping, inputs and the loss checked for NaN/log(0).
    """

    name, practice, title = "nan", "T4", "NaN/Inf loss"

    def check(self, curves, analysis):
        for label, series in (("training", curves.train), ("validation", curves.val)):
            if series is None:
                continue
            i = series.first_nonfinite()
            if i is None:
                continue
            step, value = int(series.steps[i]), float(series.values[i])
            ev = {"series": series.name, "since_step": step, "value": str(value),
                  "nonfinite_points": int((~np.isfinite(series.values)).sum())}
            before = ""
            if i > 0:
                ev.update(last_finite_step=int(series.steps[i - 1]), last_finite_value=float(series.values[i - 1]))
                before = f" (last finite value {_fmt(series.values[i - 1])} at step {int(series.steps[i - 1])})"
            if curves.lr is not None and len(curves.lr):
                j = int(np.searchsorted(curves.lr.steps, step, side="right")) - 1
                if j >= 0:
                    ev["lr"] = float(curves.lr.values[j])
            return self.finding(
                "fail",
                f"{label} loss is {value} from step {step}{before}",
                ev,
                cause="the LR is too high for this set-up, or a NaN/Inf enters through the data or "
                      "the loss (log of 0, division by 0)",
                fix="Lower the LR ÷10 (T4) and/or set grad_clip=1.0; check the inputs for NaN/Inf "
                    "(`danlu audit`) and the loss for log(0) or /0; keep the best checkpoint.",
            )
        return None


@register
class Diverging(DiagnosisRule):
    """The training loss climbs well above its best and stays there, or both curves rise.

    Why (T2): both rising is the worst case: a broken set-up or an LR far too high.
    How: on the running median, (a) DIVERGE_RATIO x the best for DIVERGE_MIN_POINTS
    trailing points, giving back DIVERGE_OF_LEARNED of what was learned; (b) DIVERGE_RATIO x
    the start at some point and never below the start (or above the baseline) again;
    (c) a consistent RISE_CHANGE rise over the last quarter, validation not falling.
    Fix: LR ÷10 (T4), warmup, clipping; check loss sign, labels and output layer.
    """

    name, practice, title = "diverging", "T2", "diverging"

    def check(self, curves, a):
        if a is None:
            return None
        s = a.smooth
        i_min = int(np.argmin(s))
        rise = a.rel(s[-1], s[i_min])
        floor = DIVERGE_OF_LEARNED * max(a.start_level - float(s[i_min]), 0.0)
        above = (a.rel_array(s, s[i_min]) >= DIVERGE_RATIO - 1) & (s - s[i_min] >= floor)
        trailing = len(above) - (np.flatnonzero(~above)[-1] + 1 if (~above).any() else 0)
        ev = {"best_step": int(a.steps[i_min]), "best_smoothed": float(s[i_min]),
              "now_smoothed": float(s[-1]), "rise": round(rise, 4)}
        lr = a.lr_window(0.0)
        if len(lr):
            ev["lr_max"] = float(lr.max())
        fix = ("Lower the LR ÷10 (T4) or add warmup/grad_clip; if the loss rises from the very first "
               "steps, the set-up is broken: check the loss sign, the labels and the output layer "
               "(`danlu check`). Keep the best checkpoint.")
        cause = "LR too high, or a broken set-up (loss sign, labels, output layer)"
        if trailing >= DIVERGE_MIN_POINTS:
            since = int(a.steps[len(s) - trailing])
            ev["since_step"] = since
            return self.finding(
                "fail",
                f"training loss rose to {_fmt(s[-1])}, {1 + rise:.1f}x its best {_fmt(s[i_min])} "
                f"(step {int(a.steps[i_min])}), and has stayed up since step {since}",
                ev, cause=cause, fix=fix,
            )
        i_peak, start = int(np.argmax(s)), a.start_level
        jumped = np.flatnonzero(a.rel_array(s, start) >= DIVERGE_RATIO - 1)
        base = curves.baseline_loss
        at_base = base is not None and base > 0 and a.rel(s[-1], base) > -LEARNED_MARGIN
        recovered = -a.rel(s[-1], start) >= PLATEAU_MIN_DROP and not at_base
        if len(jumped) >= DIVERGE_MIN_POINTS and not recovered:
            since = int(a.steps[jumped[0]])
            ev.update(since_step=since, peak_step=int(a.steps[i_peak]), peak_smoothed=float(s[i_peak]),
                      start=start)
            return self.finding(
                "fail",
                f"training loss jumped to {_fmt(s[i_peak])} ({1 + a.rel(s[i_peak], start):.1f}x its start "
                f"{_fmt(start)}) at step {since} and never got below its start again (now {_fmt(s[-1])})",
                ev, cause=cause + "; the blow-up can leave dead units that predict a constant", fix=fix,
            )
        late = a.train_trend(LATE)
        if late.n < MK_MIN_POINTS or not late.rising(RISE_CHANGE) or a.of_learned(late.delta) < RISE_OF_LEARNED:
            return None
        vlate = a.val_trend(LATE)
        if vlate is not None and vlate.n >= 2 and vlate.falling(0.0):
            return None  # validation still improves: not a broken run
        ev.update(since_step=int(late.start), train_late=late.to_dict())
        both = vlate is not None and vlate.n >= 2 and vlate.rising(RISE_CHANGE)
        if vlate is not None:
            ev["val_late"] = vlate.to_dict()
        what = "training and validation loss both rise" if both else "training loss rises"
        return self.finding(
            "fail",
            f"{what} over the last quarter ({_pct(late.change)} training since step {int(late.start)})",
            ev,
            cause="LR too high, or a broken set-up (network, parameters, data) (T2)",
            fix="Lower the LR ÷10 (T4); check the network, its parameters and the data cleaning (T2).",
        )


@register
class DataProblem(DiagnosisRule):
    """Training flat while validation moves, or validation no better than the majority baseline.

    Why (T2): "train loss flat, val loss falling: the data has a problem".
    How: (a) best smoothed validation within BASELINE_MARGIN of the baseline while training got
    LEARNED_MARGIN below it; (b) training's whole-run trend flat (FLAT_CHANGE) while validation's
    moves consistently by MOVE_CHANGE (at least 4 validation points).
    Fix: labels, split, distribution, shuffling; `danlu audit`.
    """

    name, practice, title = "data_problem", "T2", "data problem"

    def check(self, curves, a):
        if a is None or a.val is None:
            return None
        fix = ("Check the labels (are they right, and paired with the right inputs?), that train and "
               "validation come from the same distribution, and that the data is shuffled (T2); "
               "run `danlu audit`.")
        base = curves.baseline_loss
        if base is not None and base > 0:
            vbest = float(np.min(a.val_smooth))
            tbest = float(np.min(a.smooth))
            if vbest >= base * (1 - BASELINE_MARGIN) and a.rel(tbest, base) <= -LEARNED_MARGIN:
                return self.finding(
                    "warn",
                    f"validation loss never beat the {baseline_name(curves)} ({_fmt(vbest)} vs {_fmt(base)}) "
                    f"while training loss fell to {_fmt(tbest)}",
                    {"best_val": vbest, "baseline_loss": base, "best_train": tbest,
                     "since_step": int(a.val.steps[0])},
                    cause="what is learned on the training set does not carry over: wrong or shuffled "
                          "labels, or train and validation differ",
                    fix=fix,
                )
        if len(a.val) < 4:
            return None
        whole = a.train_trend(0.0)
        vwhole = a.val_trend(0.0)
        if whole.flat(FLAT_CHANGE) and vwhole is not None and (
            vwhole.falling(MOVE_CHANGE) or vwhole.rising(MOVE_CHANGE)
        ):
            way = "falls" if vwhole.change < 0 else "rises"
            return self.finding(
                "warn",
                f"training loss is flat ({_pct(whole.change)}) while validation loss {way} "
                f"({_pct(vwhole.change)})",
                {"train": whole.to_dict(), "val": vwhole.to_dict(), "since_step": int(a.start)},
                cause="the validation curve does not follow training: labels, split or preprocessing differ",
                fix=fix,
            )
        return None


@register
class Overfitting(DiagnosisRule):
    """Validation loss turned up (or stalled) while training loss keeps falling.

    Why (T2, T3): past the turn, more training only fits the training set; the best
    checkpoint is the one to keep (early stopping).
    How: the minimum of the validation running median is the turn; warn when the curve now
    stands OVERFIT_RISE above it with OVERFIT_MIN_AFTER points after it and training not
    rising; info when validation stalled since STALL_FRACTION of the run while training fell
    STALL_TRAIN_DROP (and STALL_OF_LEARNED) more.
    Fix: keep the best checkpoint (named), then regularise.
    """

    name, practice, title = "overfitting", "T3", "overfitting"

    def check(self, curves, a):
        if a is None or a.val is None or len(a.val) < 3:
            return None
        vs, steps = a.val_smooth, a.val.steps
        i = int(np.argmin(vs))
        after = len(vs) - 1 - i
        if after < OVERFIT_MIN_AFTER:
            return None
        turn = int(steps[i])
        train_since = a.rel(a.smooth[-1], a.smooth_at(turn))
        rise = a.val_rel(vs[-1], vs[i])
        train_rise = float(a.smooth[-1]) - a.smooth_at(turn)
        if train_since >= RISE_CHANGE and a.of_learned(train_rise) >= RISE_OF_LEARNED:
            return None  # training rises too: that is divergence, not overfitting
        best = int(np.argmin(a.val.values))
        ev = {"since_step": turn, "turn_step": turn, "best_step": int(steps[best]),
              "best_val": float(a.val.values[best]), "last_val": float(a.val.values[-1]),
              "val_rise": round(float(rise), 4), "train_change_since_turn": round(train_since, 4),
              "val_series": a.val.name}
        keep = f"keep the checkpoint from step {int(steps[best])}"
        if curves.best_checkpoint:
            ev["best_checkpoint"] = curves.best_checkpoint
            keep += f" ({curves.best_checkpoint})"
        fix = (f"Early stopping on val loss: {keep} (T3). Then regularise: more data or augmentation, "
               "weight decay, dropout, or a smaller model (T2).")
        if rise >= OVERFIT_RISE:
            return self.finding(
                "warn",
                f"validation loss turned up at step {turn}: best {_fmt(a.val.values[best])} (step "
                f"{int(steps[best])}), now {_fmt(a.val.values[-1])} ({_pct(rise)}), while training loss went "
                f"{_fmt(a.smooth_at(turn))} → {_fmt(a.smooth[-1])}",
                ev, cause="the model memorises the training set", fix=fix,
            )
        fell = a.smooth_at(turn) - float(a.smooth[-1])
        if turn <= a.at(1 - STALL_FRACTION) and train_since <= -STALL_TRAIN_DROP and a.of_learned(fell) >= STALL_OF_LEARNED:
            return self.finding(
                "info",
                f"validation loss stopped improving at step {turn} (best {_fmt(a.val.values[best])}) "
                f"while training loss fell {abs(train_since):.0%} since",
                ev, cause="more training now fits the training set only", fix=fix,
            )
        return None


@register
class Plateau(DiagnosisRule):
    """Both curves flat and the loss barely moved, or sits at the majority baseline.

    Why (T2): "both flat: a bottleneck; try a lower LR or another batch size" — and at a tiny
    LR, the opposite (T4: slow -> ×5-10).
    How: training flat over the last PLATEAU_WINDOW, fell less than PLATEAU_MIN_DROP overall
    (or is within LEARNED_MARGIN of the baseline), validation not falling; waits for
    PLATEAU_MIN_POINTS points.
    Fix: depends on the LR: ≤ TINY_LR raise it; at the baseline after falling to it (it
    learned the class frequencies: a language model at its unigram entropy), train longer
    first; else lower it or change the batch size.
    """

    name, practice, title = "plateau", "T2", "plateau"

    def check(self, curves, a):
        if a is None or len(a.train) < PLATEAU_MIN_POINTS:
            return None
        late = a.train_trend(1 - PLATEAU_WINDOW)
        if not late.flat(FLAT_CHANGE):
            return None
        drop = -a.rel(a.smooth[-1], a.start_level)
        if -drop >= DIVERGE_RATIO - 1:
            return None  # flat far above its start: the divergence rule's case
        base = curves.baseline_loss
        at_base = base is not None and base > 0 and a.rel(a.smooth[-1], base) > -LEARNED_MARGIN
        if drop >= PLATEAU_MIN_DROP and not at_base:
            return None
        vlate = a.val_trend(1 - PLATEAU_WINDOW)
        if vlate is not None and vlate.n >= 2 and vlate.falling(FLAT_CHANGE):
            return None  # validation still improves: not stuck (the data-problem rule's case)
        lr = a.lr_window(0.0)
        ev = {"since_step": int(late.start), "train_change": round(-drop, 4), "late": late.to_dict(),
              "level": float(a.smooth[-1])}
        if base is not None:
            ev["baseline_loss"] = base
        where = f" at the {baseline_name(curves)} {_fmt(base)}" if at_base else ""
        if len(lr):
            ev.update(lr_max=float(lr.max()), lr_end=float(lr[-1]))
        if len(lr) and lr.max() <= TINY_LR:
            fix = (f"The LR (max {lr.max():.1e}) is tiny: raise it ×5–10 and retry (T4: slow → ×5–10), "
                   "or find one with `danlu lr RECIPE`.")
        elif at_base and drop >= PLATEAU_MIN_DROP:
            # it learned the class frequencies and nothing more yet: a language model sits at its
            # unigram entropy for hundreds of steps before it learns from the context
            fix = (f"It fell {drop * 100:.0f}% to the {baseline_name(curves)} (it learned how often each class is) "
                   "and no further: run `danlu check` (S5 tells whether the model uses its inputs); if it "
                   "does, train longer (a language model sits at its unigram entropy for hundreds of steps "
                   "before it learns from the context), then lower the LR (÷3–10) (T2).")
        else:
            fix = (f"Lower the LR (÷3–10) or change the batch size (T2); if the loss sits at the "
                   f"{baseline_name(curves)} from the start, check that labels reach the loss and gradients "
                   "reach the weights (`danlu check`).")
        return self.finding(
            "warn",
            f"training loss is flat at {_fmt(a.smooth[-1])}{where}: {_pct(-drop)} overall, "
            f"{_pct(late.change)} over the last half",
            ev, cause="the optimisation is stuck (LR too small or too large, a saddle, or no signal)",
            fix=fix,
        )


@register
class Noisy(DiagnosisRule):
    """High step-to-step variance late in training, large against what was learned.

    Why (T6): "violent oscillation that does not converge: raise the batch size" (or lower the LR).
    How: over the last NOISY_WINDOW, the NOISY_QUANTILE of |loss - running median of
    NOISY_MEDIAN steps| must reach NOISY_OF_LEARNED of what was learned and NOISY_OF_LEVEL of
    the loss level. A quantile ignores a few bad batches; the "learned" yardstick ignores the
    large relative jitter of near-zero losses. Skipped while the loss still falls fast.
    Fix: lower the LR or raise the batch size (scaling the LR, T6).
    """

    name, practice, title = "noisy", "T6", "noisy"

    def check(self, curves, a):
        if a is None:
            return None
        w = a.train.window(a.at(1 - NOISY_WINDOW), a.end)
        if len(w) < 20:
            return None
        raw = w.values[-5000:]
        running = median_smooth(raw, NOISY_MEDIAN)
        jitter = float(np.quantile(np.abs(raw - running), NOISY_QUANTILE))
        level = float(np.mean(running))
        learned = a.learned
        if not a.learned_enough:
            return None  # nothing learned: plateau or divergence, not noise
        late = a.train_trend(1 - NOISY_WINDOW)
        if late.falling(STILL_FALLING) and a.of_learned(late.delta) >= STILL_OF_LEARNED:
            return None  # still descending: jitter cannot be judged against what is learned yet
        if jitter < NOISY_OF_LEARNED * learned or jitter < NOISY_OF_LEVEL * abs(level):
            return None
        return self.finding(
            "warn",
            f"training loss jumps by {_fmt(jitter)} or more on 1 step in {round(1 / (1 - NOISY_QUANTILE))} "
            f"late in training ({jitter / learned:.0%} of the {_fmt(learned)} learned; level {_fmt(level)})",
            {"jitter": jitter, "quantile": NOISY_QUANTILE, "level": level, "learned": learned,
             "since_step": int(w.steps[0])},
            cause="LR too high for the batch size, or a few bad samples",
            fix="Lower the LR or increase the batch size (and scale the LR with it, T6: `danlu lr "
                "--ref`); look for samples whose loss spikes (`danlu cases`).",
        )


@register
class StillImproving(DiagnosisRule):
    """Both curves still falling at the end: training stopped too early (underfitting).

    Why (T2): "train and val both falling: still learning, not converged".
    How (finished runs only): training fell STILL_FALLING (and STILL_OF_LEARNED) over the last
    quarter, consistently; validation's best is among its last two points and it fell
    VAL_STILL_FALLING over the last quarter.
    Fix: train longer; a larger model if the loss is still high.
    """

    name, practice, title = "underfitting", "T2", "still improving"
    final_only = True

    def check(self, curves, a):
        if a is None or not a.learned_enough:
            return None
        late = a.train_trend(LATE)
        if late.n < MK_MIN_POINTS or not late.falling(STILL_FALLING) or a.of_learned(late.delta) < STILL_OF_LEARNED:
            return None
        if a.val is not None and len(a.val) >= 2:
            if int(np.argmin(a.val_smooth)) < len(a.val) - 2:
                return None  # validation's best is behind: not "still improving"
            vlate = a.val_trend(LATE)
            if vlate is not None and vlate.n >= 2 and not vlate.falling(VAL_STILL_FALLING):
                return None  # validation has levelled off
        ev = {"train_late": late.to_dict(), "since_step": int(late.start)}
        return self.finding(
            "info",
            f"still improving at the end: training loss {_pct(late.change)} over the last quarter"
            + ("" if a.val is None else ", validation loss at its best"),
            ev, cause="training stopped before the curves levelled off",
            fix="Train longer (more epochs); if the loss is still high, try a larger model (T2).",
        )


@register
class LRDecayConvergence(DiagnosisRule):
    """The curve flattens only because the LR fell to its floor: fake convergence.

    Why (T4): "LR decay can fake convergence": a vanishing LR flattens any curve.
    How (finished runs only): the LR ended under LR_FLOOR_RATIO of its peak and its last-quarter
    mean under LR_DECAY_DROP of the third quarter's; training fell LR_MID_FALL (and
    LR_MID_OF_LEARNED) in the third quarter; the log-loss fall per unit of LR in the last
    quarter is still LR_DECAY_EFFICIENCY of the third quarter's.
    Fix: a constant-LR tail or a higher floor; if the loss keeps falling, train longer.
    """

    name, practice, title = "lr_decay", "T4", "flat only from LR decay"
    final_only = True

    def check(self, curves, a):
        if a is None or curves.lr is None or len(curves.lr) < 10 or not a.learned_enough:
            return None
        lr_all = a.lr_window(0.0)
        lr_mid, lr_late = a.lr_window(0.5, LATE), a.lr_window(LATE)
        if not (len(lr_mid) and len(lr_late)) or lr_all.max() <= 0:
            return None
        if lr_all[-1] > LR_FLOOR_RATIO * lr_all.max():
            return None  # the LR did not decay to a floor
        mid, late = a.train_trend(0.5, LATE), a.train_trend(LATE)
        if mid.n < MK_MIN_POINTS or not mid.falling(LR_MID_FALL) or a.of_learned(mid.delta) < LR_MID_OF_LEARNED:
            return None
        if late.falling(STILL_FALLING) and a.of_learned(late.delta) >= STILL_OF_LEARNED:
            return None  # still clearly falling: the still-improving rule's case
        d_mid, d_late = -math.log1p(mid.change), -math.log1p(max(late.change, -0.999))
        lr_ratio = float(lr_late.mean() / lr_mid.mean())
        if lr_ratio >= LR_DECAY_DROP:
            return None  # the LR did not fall between the two windows
        efficiency = (d_late / d_mid) / lr_ratio
        if efficiency < LR_DECAY_EFFICIENCY:
            return None  # progress per unit of LR collapsed: real convergence
        return self.finding(
            "info",
            f"the curve flattens as the LR decays to {lr_all[-1]:.1e} ({lr_ratio:.0%} of the third "
            f"quarter's); per unit of LR the loss still falls at {efficiency:.0%} of the earlier rate",
            {"lr_max": float(lr_all.max()), "lr_end": float(lr_all[-1]), "lr_ratio": round(lr_ratio, 4),
             "train_mid": mid.to_dict(), "train_late": late.to_dict(),
             "efficiency": round(efficiency, 3), "since_step": int(late.start)},
            cause="a decaying LR makes any curve look converged",
            fix="Check with a constant-LR tail (schedule=constant, or resume with a higher min_lr): if the "
                "loss keeps falling, train longer or keep the floor higher (about 1e-5, T4).",
        )


#: Waiting for data: the loop waited for batches this share of the time or more...
DATA_BOUND_SHARE = 0.5
#: ...as the median over the later half of at least this many resource samples (danlu.monitor).
DATA_BOUND_MIN_POINTS = 3


@register
class DataBound(DiagnosisRule):
    """The training loop spends most of its time waiting for batches (S12, T1).

    Why: a model that waits for data gains nothing from a faster GPU or a larger batch; more
    DataLoader workers, cached decoding or lighter transforms make the whole run faster.
    How: the share of wall time spent in the data loader's `next()`, sampled every few seconds
    by danlu.monitor (series sys/data_wait); the median over the later half of the samples.
    Fix: num_workers (and pin_memory on GPU), cache decoded data, vectorise transforms;
    `danlu check` (S12) profiles __getitem__ and suggests a number of workers.
    """

    name, practice, title = "data_bound", "S12", "waiting for data"

    def check(self, curves, a):
        wait = curves.extra.get("data_wait")
        if wait is None:
            return None
        values = wait.finite().values
        if len(values) < DATA_BOUND_MIN_POINTS:
            return None
        share = float(np.median(values[len(values) // 2:]))
        if share < DATA_BOUND_SHARE:
            return None
        return self.finding(
            "warn",
            f"the training loop waited for data {share:.0%} of the time (median of the later "
            f"{len(values) - len(values) // 2} of {len(values)} samples)",
            {"data_wait_share": share, "samples": int(len(values))},
            cause="data loading is slower than the training step: the model idles between batches",
            fix="Raise num_workers (and pin_memory on a GPU), cache decoded data or lighten the transforms; "
                "`danlu check RECIPE --only S12` profiles __getitem__ and suggests a number of workers.",
        )


#: Every regime a diagnosis can name, in priority order, plus the healthy one.
REGIMES = tuple(_RULES) + ("learning",)
