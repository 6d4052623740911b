"""Suspicious labels (C2) by confident learning, and how many chance alone would give.

A misclassified sample is not a label error: on a hard task a good model gets many samples
wrong whose labels are right. Confident learning (Northcutt, Jiang & Chuang, JAIR 2021;
the method behind the `cleanlab` library) looks for samples the model places in another
class *as confidently as it places that class's own samples*, counts them per pair of
(given, likely true) classes, and keeps only that many per pair:

1. Per class j, the threshold t_j is the mean probability of j over samples labelled j
   (what "confident in j" means for this model).
2. The confident joint C[i, j] counts samples labelled i whose probability for j reaches
   t_j (the largest such j when several do); rows are rescaled to the label counts.
3. For each pair i != j, the C[i, j] samples labelled i with the largest p(j) - p(i) are
   the issues; a sample the model predicts as its own label never is.
4. Issues are ranked by self-confidence, p(given label), lowest first.

The probabilities must be out of sample (a validation split, or out-of-fold predictions on
the training split): a model that memorised a wrong label is confident in it.

*Expected by chance*: if every label were right and the probabilities calibrated, sample i
would carry label j with probability p_ij, so the number of correctly labelled samples whose
label has probability at most s is E(s) = sum of all p_ij <= s. The probabilities are first
calibrated to the given labels by one temperature (the maximum-likelihood fit, Guo et al.
2017), which is the right calibration if the labels are right and errs towards more
chance if they are not. For the issues ranked by p(label), E at the k-th one says how many
of the first k chance alone explains; `sure` is the longest head of the list where chance
explains at most a tenth (SURE_SHARE) of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LabelIssues", "find_label_issues", "confident_joint", "temperature", "chance_counts", "SURE_SHARE"]

#: The head of the list counts as "sure" while chance explains at most this share of it.
SURE_SHARE = 0.1


@dataclass
class LabelIssues:
    """Samples whose given label confident learning finds unlikely, most suspicious first."""

    indices: np.ndarray           # dataset positions, lowest p(given label) first
    self_confidence: np.ndarray   # p(given label) of each
    likely: np.ndarray            # the class the model predicts for each
    chance: np.ndarray            # chance[k]: how many of the first k + 1 chance alone explains
    temperature: float            # the temperature that calibrates the probabilities to the labels
    thresholds: np.ndarray        # t_j per class (inf for classes no sample carries)
    joint: np.ndarray             # calibrated confident joint, counts of (given, likely true) class

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def expected_by_chance(self) -> float:
        """How many of all the issues chance alone explains."""
        return float(self.chance[-1]) if len(self.chance) else 0.0

    @property
    def sure(self) -> int:
        """The length of the longest head of the list that chance explains at most SURE_SHARE of."""
        ok = np.flatnonzero(self.chance <= SURE_SHARE * np.arange(1, len(self.chance) + 1))
        return int(ok[-1]) + 1 if ok.size else 0


def confident_joint(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated joint counts [given, likely true], per-class thresholds) for valid labels in 0..C-1."""
    n, c = probs.shape
    counts = np.bincount(labels, minlength=c).astype(np.float64)
    thresholds = np.full(c, np.inf)
    for j in np.flatnonzero(counts):
        thresholds[j] = probs[labels == j, j].mean()
    above = probs >= thresholds - 1e-6
    has = above.any(axis=1)
    likely = np.where(above, probs, -1.0).argmax(axis=1)
    raw = np.zeros((c, c))
    np.add.at(raw, (labels[has], likely[has]), 1.0)
    rows = raw.sum(axis=1, keepdims=True)
    joint = np.where(rows > 0, raw / np.maximum(rows, 1.0) * counts[:, None], np.diag(counts))
    return joint, thresholds


def _issues(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boolean mask of issues, joint, thresholds) for valid labels."""
    n, c = probs.shape
    joint, thresholds = confident_joint(probs, labels)
    mask = np.zeros(n, dtype=bool)
    p_given = probs[np.arange(n), labels]
    for i in range(c):
        members = np.flatnonzero(labels == i)
        if not members.size:
            continue
        for j in range(c):
            k = int(round(joint[i, j])) if j != i else 0
            if k <= 0:
                continue
            margin = probs[members, j] - p_given[members]
            top = members[np.argsort(-margin, kind="stable")[:k]]
            mask[top] = True
    mask &= probs.argmax(axis=1) != labels
    return mask, joint, thresholds


def temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that makes softmax(log p / T) fit `labels` best (golden-section search on log T)."""
    logp = np.log(np.clip(probs, 1e-12, 1.0))
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        return float(-(z[rows, labels] - np.log(np.exp(z).sum(axis=1))).mean())

    lo, hi = -3.0, 3.0
    g = (np.sqrt(5.0) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(40):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))


def _scaled(probs: np.ndarray, t: float) -> np.ndarray:
    z = np.log(np.clip(probs, 1e-12, 1.0)) / t
    z -= z.max(axis=1, keepdims=True)
    q = np.exp(z)
    return q / q.sum(axis=1, keepdims=True)


def chance_counts(calibrated: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """E(s) for each level s: the sum of all calibrated probabilities at most s (see the module doc)."""
    if not len(levels):
        return np.zeros(0)
    flat = calibrated[calibrated <= levels.max() + 1e-12]
    flat = np.sort(flat)
    total = np.concatenate([[0.0], np.cumsum(flat)])
    return total[np.searchsorted(flat, levels + 1e-12, side="right")]


def find_label_issues(probs: np.ndarray, labels: np.ndarray) -> LabelIssues:
    """Confident-learning label issues of out-of-sample `probs` (N, C) for integer `labels` (N,).

    Labels outside 0..C-1 are issues by definition (self-confidence 0) and lead the list.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    n, c = probs.shape
    valid = (labels >= 0) & (labels < c)
    safe = np.where(valid, labels, 0)
    mask, joint, thresholds = _issues(probs[valid], safe[valid]) if valid.any() else \
        (np.zeros(0, bool), np.zeros((c, c)), np.full(c, np.inf))
    flagged = np.zeros(n, dtype=bool)
    flagged[np.flatnonzero(valid)[mask]] = True
    flagged[~valid] = True
    self_conf = np.where(valid, probs[np.arange(n), safe], 0.0)
    idx = np.flatnonzero(flagged)
    idx = idx[np.lexsort((idx, self_conf[idx]))]

    t = temperature(probs[valid], safe[valid]) if valid.sum() > 1 else 1.0
    calibrated = _scaled(probs[valid], t)
    cal_self = np.zeros(n)
    cal_self[valid] = calibrated[np.arange(int(valid.sum())), safe[valid]]
    levels = np.maximum.accumulate(cal_self[idx]) if len(idx) else np.zeros(0)
    return LabelIssues(
        indices=idx,
        self_confidence=self_conf[idx],
        likely=probs[idx].argmax(axis=1),
        chance=chance_counts(calibrated, levels),
        temperature=t,
        thresholds=thresholds,
        joint=joint,
    )
