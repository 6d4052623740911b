"""S2/S3 on a fit that ran out of steps: the loss of the best input-blind prediction, and the longer
attempt a slow learner gets before a verdict."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from doctor_helpers import check, finding
from torch.nn import functional as F

from danlu.checks.doctor.s2_s3_overfit import blind_loss


def _ctx(loss=F.cross_entropy):
    return SimpleNamespace(classification=True, loss=loss)


def _entropy(labels: list[int]) -> float:
    counts = torch.bincount(torch.tensor(labels)).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def test_one_label_a_sample_gives_the_labels_entropy():
    target = torch.tensor([0, 0, 1, 2])
    assert blind_loss(_ctx(), torch.zeros(4, 3), target, samples=4) == pytest.approx(_entropy([0, 0, 1, 2]), abs=1e-6)


def test_sequence_targets_are_read_position_by_position():
    """[B, T] targets against [B, T, V] scores: a blind model may still know the position."""
    target = torch.tensor([[0, 1], [0, 2], [0, 3], [0, 4]])        # position 0 always 0: no uncertainty there
    scores = torch.zeros(4, 2, 5)

    def loss(output, target):
        return F.cross_entropy(output.reshape(-1, 5), target.reshape(-1))

    expected = (0.0 + _entropy([1, 2, 3, 4])) / 2
    assert blind_loss(_ctx(loss), scores, target, samples=4) == pytest.approx(expected, abs=1e-6)
    assert expected < _entropy(target.reshape(-1).tolist())          # lower than ignoring the position too


def test_sequence_first_flattened_targets_are_grouped_by_position():
    """pytorch/examples' language model: log-probabilities [T*B, V] against targets flattened [T*B]."""
    by_sample = torch.tensor([[0, 1], [0, 2], [0, 3], [0, 4]])
    flat = by_sample.t().reshape(-1)                                  # sequence-first, as the example trains
    log_probs = torch.zeros(8, 5).log_softmax(1)
    value = blind_loss(_ctx(F.nll_loss), log_probs, flat, samples=4)
    assert value == pytest.approx((0.0 + _entropy([1, 2, 3, 4])) / 2, abs=1e-6)


def _regression(loss):
    return SimpleNamespace(classification=False, loss=loss)


@pytest.mark.parametrize("loss, expected", [
    (F.mse_loss, lambda t: float(t.var(unbiased=False))),                         # the variance
    (F.l1_loss, lambda t: float((t - t.median()).abs().mean())),                   # spread about the median
    (F.binary_cross_entropy_with_logits,                                           # the tags' entropy
     lambda t: float(-(t.mean() * t.mean().log() + (1 - t.mean()) * (1 - t.mean()).log()))),
])
def test_regression_reference_is_the_best_constant_prediction(loss, expected):
    """Whatever the loss, the best prediction blind to the input is one constant: found by minimising."""
    target = (torch.rand(64, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    assert blind_loss(_regression(loss), torch.zeros(64), target, 64) == pytest.approx(expected(target), rel=1e-3)


def test_no_reference_for_tuples_or_outputs_of_another_size():
    assert blind_loss(_regression(F.mse_loss), (torch.zeros(4),), torch.ones(4), 4) is None
    assert blind_loss(_regression(F.gaussian_nll_loss), torch.zeros(4, 2), torch.ones(4, 1), 4) is None
    assert blind_loss(_ctx(), (torch.zeros(4, 3),), torch.tensor([0, 1, 2, 0]), 4) is None
    assert math.isfinite(blind_loss(_ctx(), torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), 4))


def test_a_slow_learner_gets_a_longer_attempt_before_a_verdict():
    """S2 on a healthy MLP cut to 20 steps: it learned from its inputs (far below the blind loss) but had
    not fitted; one attempt 3x as long fits it. Without the longer attempt it would only warn."""
    settings = {"S2.max_steps": 20, "S2.escalate": 1}
    cut = finding(check("clean", "S2", settings={**settings, "S2.extend": 1}), "S2")
    assert cut.status == "warn" and "far below" in cut.summary and "not fitted" in cut.summary
    longer = finding(check("clean", "S2", settings=settings), "S2")
    assert longer.status == "pass" and 20 < longer.evidence["steps"] <= 60
    assert [a["reached"] for a in longer.evidence["attempts"]] == [False, True]


def test_a_model_blind_to_its_input_gets_no_longer_attempt():
    """The planted S5 bug stops at the blind loss: no extra attempt, and S2 still fails."""
    f = finding(check("ignores_input", "S2"), "S2")
    assert f.status == "fail" and len(f.evidence["attempts"]) == 3
