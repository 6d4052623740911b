"""S2/S3's reference for a fit that ran out of steps: the loss of the best input-blind prediction."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
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


def test_no_reference_for_regression_or_tuples():
    assert blind_loss(SimpleNamespace(classification=False, loss=F.mse_loss), torch.zeros(4), torch.ones(4), 4) is None
    assert blind_loss(_ctx(), (torch.zeros(4, 3),), torch.tensor([0, 1, 2, 0]), 4) is None
    assert math.isfinite(blind_loss(_ctx(), torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), 4))
