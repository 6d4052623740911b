"""C4: an ensemble of several runs' models against each member (the last step, 003).

Classification: probability averaging (mean of the members' class probabilities, then
argmax) and majority voting (the most frequent predicted class; ties go to the class
with the higher averaged probability). Regression: the mean and the median of the
members' predictions. Each is scored on the same whole validation set as the members.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from danlu.evaluation.predict import Predictions

__all__ = ["EnsembleScore", "ensemble_scores", "vote", "average_probabilities"]


@dataclass
class EnsembleScore:
    name: str            # member name, "prob-avg", "vote", "mean", "median"
    accuracy: float      # classification (NaN for regression)
    loss: float          # negative log-likelihood (classification; NaN for vote) or MSE (regression)
    mae: float = float("nan")


def average_probabilities(members: list[Predictions]) -> np.ndarray:
    return np.mean([m.probs for m in members], axis=0)


def vote(members: list[Predictions]) -> np.ndarray:
    """Majority vote over the members' predicted classes; ties broken by the averaged probabilities."""
    c = members[0].num_classes
    votes = np.zeros((len(members[0]), c))
    for m in members:
        votes[np.arange(len(m)), m.predicted] += 1
    avg = average_probabilities(members)
    return np.argmax(votes + 1e-6 * avg, axis=1)  # avg < 1, so it only breaks ties


def _nll(probs: np.ndarray, targets: np.ndarray) -> float:
    t = targets.astype(np.int64)
    ok = (t >= 0) & (t < probs.shape[1])
    return float(-np.mean(np.log(np.clip(probs[np.flatnonzero(ok), t[ok]], 1e-12, 1.0))))


def ensemble_scores(members: list[Predictions], names: list[str]) -> list[EnsembleScore]:
    """Scores of each member, then of the ensembles, on the same targets."""
    t = members[0].targets
    out = []
    if members[0].task == "classification":
        for m, name in zip(members, names):
            out.append(EnsembleScore(name, float(np.mean(m.predicted == t)), _nll(m.probs, t)))
        avg = average_probabilities(members)
        out.append(EnsembleScore("prob-avg", float(np.mean(avg.argmax(axis=1) == t)), _nll(avg, t)))
        out.append(EnsembleScore("vote", float(np.mean(vote(members) == t)), float("nan")))
        return out
    preds = np.stack([np.asarray(m.outputs, dtype=np.float64).reshape(len(m), -1) for m in members])
    target = np.asarray(t, dtype=np.float64).reshape(len(t), -1)
    for k, name in enumerate(names):
        out.append(_regression(name, preds[k], target))
    out.append(_regression("mean", preds.mean(axis=0), target))
    out.append(_regression("median", np.median(preds, axis=0), target))
    return out


def _regression(name: str, pred: np.ndarray, target: np.ndarray) -> EnsembleScore:
    r = pred - target
    return EnsembleScore(name, float("nan"), float(np.mean(r ** 2)), float(np.mean(np.abs(r))))
