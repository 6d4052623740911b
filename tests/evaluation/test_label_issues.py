"""Suspicious labels by confident learning (C2): wrong labels found, the model's own errors on a hard task
not called label errors, and the expected-by-chance count that tells the two apart."""

from __future__ import annotations

import numpy as np
import pytest

from danlu.evaluation.label_issues import chance_counts, confident_joint, find_label_issues, temperature


def calibrated_task(n: int, classes: int, sharpness: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(probs, true labels) of a calibrated model: labels are drawn from the probabilities themselves."""
    rng = np.random.default_rng(seed)
    logits = sharpness * rng.standard_normal((n, classes))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    labels = (rng.random((n, 1)) > np.cumsum(probs, axis=1)).sum(axis=1)
    return probs, labels


def flip(labels: np.ndarray, count: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    where = rng.choice(len(labels), count, replace=False)
    noisy = labels.copy()
    noisy[where] = (labels[where] + rng.integers(1, classes, count)) % classes
    return noisy, where


def confident_model(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A good model of the true labels: most mass on the true class, a little spread elsewhere."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.standard_normal((n, classes))
    logits[np.arange(n), labels] += 6.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, labels


@pytest.mark.parametrize("classes", [2, 10])
def test_flipped_labels_under_a_confident_model_are_found_and_beyond_chance(classes):
    """The planted case: 3% of the labels flipped under a model that is right on the true labels. The
    chance count is conservative (the flips pull the fitted temperature up), so only the clearest
    flips are called very likely wrong; those must all be flips."""
    probs, labels = confident_model(1000, classes, seed=classes)
    noisy, where = flip(labels, 30, classes, seed=1)
    issues = find_label_issues(probs, noisy)
    found = set(issues.indices.tolist())
    assert len(found & set(where.tolist())) >= 25                        # recall 83% (measured 28 and 26)
    assert len(found - set(where.tolist())) <= 3                         # precision 90% (measured 100%)
    assert issues.sure >= 2 and set(issues.indices[:issues.sure].tolist()) <= set(where.tolist())
    assert np.all(np.diff(issues.self_confidence) >= 0)                  # lowest p(label) first


@pytest.mark.parametrize("classes,sharpness", [(2, 1.0), (2, 3.0), (3, 2.0), (10, 3.0)])
def test_a_calibrated_model_on_right_labels_is_not_called_a_label_problem(classes, sharpness):
    """The clean case of the same shape: every label is right (drawn from the probabilities), and on a hard
    task the model gets many wrong; the search may list doubtful ones but calls none very likely wrong
    beyond a stray one, because chance explains them."""
    probs, labels = calibrated_task(1500, classes, sharpness, seed=classes)
    issues = find_label_issues(probs, labels)
    wrong = int((probs.argmax(axis=1) != labels).sum())
    assert len(issues) < wrong                                            # not every misclassification
    assert issues.sure <= 2
    assert issues.expected_by_chance >= 0.5 * len(issues)


def test_binary_hard_task_does_not_list_every_misclassification():
    """The reported case: a binary task where the old margin rule listed all misclassifications."""
    probs, labels = calibrated_task(800, 2, 1.0, seed=7)
    issues = find_label_issues(probs, labels)
    wrong = int((probs.argmax(axis=1) != labels).sum())
    assert wrong > 150 and len(issues) < 0.8 * wrong and issues.sure == 0


def test_labels_outside_the_classes_lead_the_list():
    probs, labels = confident_model(200, 3, seed=0)
    labels[[5, 9]] = [3, -1]
    issues = find_label_issues(probs, labels)
    assert issues.indices[:2].tolist() == [5, 9] and issues.self_confidence[:2].tolist() == [0.0, 0.0]


def test_confident_joint_and_temperature_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9], [0.85, 0.15]])
    labels = np.array([0, 0, 1, 1, 1])                   # the last one is labelled 1, confidently class 0
    joint, t = confident_joint(probs, labels)
    assert t.tolist() == pytest.approx([0.85, (0.7 + 0.9 + 0.15) / 3])
    # confident: #0 in 0, #2 and #3 in 1, #4 in 0 (0.85 reaches t0); #1 reaches neither threshold.
    # raw [[1, 0], [1, 2]], rows rescaled to the label counts 2 and 3
    assert joint.tolist() == [[2.0, 0.0], [1.0, 2.0]]
    assert find_label_issues(probs, labels).indices.tolist() == [4]
    # labels drawn exactly as sharp as the probabilities say: temperature ~1
    p, y = calibrated_task(20000, 3, 2.0, seed=3)
    assert temperature(p, y) == pytest.approx(1.0, abs=0.05)
    # chance counts: the sum of all probabilities at most each level
    assert chance_counts(probs, np.array([0.1, 0.2])).tolist() == pytest.approx([0.2, 0.35 + 0.2])
