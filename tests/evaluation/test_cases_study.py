"""Case study (C2-C4): hand-checked metrics, flipped labels found, slices, residuals, ensembles, the CLI glue."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset, TensorDataset

import danlu
from danlu.evaluation import (
    Predictions,
    case_study,
    confusion_matrix,
    ensemble_scores,
    per_class_metrics,
    predict,
    residual_summary,
    slices,
    worst_cases,
)
from danlu.evaluation.ensemble import vote

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "checks" / "audit"))
from audit_planted import digits  # noqa: E402


class Plain(danlu.Recipe):
    batch_size: int = 64

    def data(self):
        raise NotImplementedError

    def model(self):
        return nn.Linear(64, 10)


class Flat(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.flatten(1))


def train_linear(x: torch.Tensor, y: torch.Tensor, steps: int = 200, seed: int = 0) -> nn.Module:
    """Full-batch Adam on a linear classifier: fast, deterministic, cannot memorise flipped labels."""
    torch.manual_seed(seed)
    model = Flat(nn.Linear(x[0].numel(), 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


# ---------------------------------------------------------------- metrics
def test_confusion_matrix_and_per_class_metrics_by_hand():
    t = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    p = np.array([0, 0, 1, 2, 1, 0, 2, 2, 2, 1])
    cm = confusion_matrix(t, p, 4)  # class 3 never appears
    assert cm.tolist() == [[2, 1, 1, 0], [1, 1, 0, 0], [0, 1, 3, 0], [0, 0, 0, 0]]
    m = per_class_metrics(cm)
    assert m.precision.tolist() == pytest.approx([2 / 3, 1 / 3, 3 / 4, 0])
    assert m.recall.tolist() == pytest.approx([1 / 2, 1 / 2, 3 / 4, 0])
    assert m.f1.tolist() == pytest.approx([4 / 7, 2 / 5, 3 / 4, 0])
    assert m.support.tolist() == [4, 2, 4, 0]
    assert m.accuracy == pytest.approx(0.6)
    assert m.macro_f1 == pytest.approx((4 / 7 + 2 / 5 + 3 / 4) / 3)  # over classes present


def test_case_study_numbers_match_the_hand_computed_example():
    t = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    p = np.array([0, 0, 1, 2, 1, 0, 2, 2, 2, 1])
    logits = torch.full((10, 3), -5.0)
    logits[torch.arange(10), torch.as_tensor(p)] = 5.0
    ds = TensorDataset(torch.arange(10.0)[:, None], torch.as_tensor(t))

    class Lookup(nn.Module):  # returns the planted logits for input k
        def forward(self, x):
            return logits[x[:, 0].long()]

    rep = case_study(Plain(), Lookup(), ds, top_k=3)
    whole = rep.finding("C3")
    assert whole.evidence["accuracy"] == pytest.approx(0.6)
    assert whole.evidence["majority_baseline"] == pytest.approx(0.4)
    per_class = next(f for f in rep.findings if f.name == "per-class metrics")
    assert per_class.evidence["f1"] == pytest.approx([4 / 7, 2 / 5, 3 / 4])
    matrix = next(f for f in rep.findings if f.name == "confusion matrix")
    assert matrix.evidence["matrix"] == [[2, 1, 1], [1, 1, 0], [0, 1, 3]]
    table = next(tb for tb in rep.tables if tb.title.startswith("C2 confusion matrix"))
    assert table.rows == [[0, 2, 1, 1], [1, 1, 1, 0], [2, 0, 1, 3]]


def test_predict_keeps_order_and_per_sample_losses():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(70, 64, generator=g), torch.randint(0, 10, (70,), generator=g)
    model = nn.Linear(64, 10)
    r = Plain()
    pr = predict(r, model, TensorDataset(x, y))
    with torch.no_grad():
        expected = F.cross_entropy(model(x), y, reduction="none")
    assert pr.targets.tolist() == y.tolist()
    assert np.allclose(pr.losses, expected.numpy(), atol=1e-6)
    assert np.allclose(pr.probs.sum(axis=1), 1.0)

    class Focal(Plain):  # a recipe's own loss is evaluated one sample at a time
        def loss(self, output, target):
            return 2.0 * F.cross_entropy(output, target)

    assert np.allclose(predict(Focal(), model, TensorDataset(x, y)).losses, 2 * expected.numpy(), atol=1e-5)


# ------------------------------------------------------- flipped labels
def test_flipped_labels_are_the_top_suspicious_labels():
    """C2 suspicious labels: 5% of the labels flipped are found by confident learning, far beyond
    what chance gives, and they lead the list."""
    xt, yt, xv, yv = digits(1000, 300, seed=3)
    m, s = xt.mean(), xt.std()
    xt, xv = (xt - m) / s, (xv - m) / s
    rng = np.random.default_rng(0)
    flip_train = rng.choice(1000, 50, replace=False)
    yt[flip_train] = (yt[flip_train] + torch.as_tensor(rng.integers(1, 10, 50))) % 10
    flip_val = np.sort(rng.choice(300, 15, replace=False))
    yv[flip_val] = (yv[flip_val] + torch.as_tensor(rng.integers(1, 10, 15))) % 10
    model = train_linear(xt, yt)

    val_report = case_study(Plain(), model, TensorDataset(xv, yv), top_k=20)
    found = next(f for f in val_report.findings if f.name == "suspicious labels")
    candidates = found.evidence["candidates"]
    # a linear model right 88% of the time: every candidate is a flipped label, 9 of the 15 are found
    # (the others are predicted with less confidence than their class's own samples get)
    assert set(candidates) <= set(flip_val.tolist()) and len(candidates) >= 8, (candidates, flip_val)
    sure = found.evidence["very_likely_wrong"]
    assert sure >= 5 and set(candidates[:sure]) <= set(flip_val.tolist())
    assert found.status == "warn" and "very likely wrong" in found.summary
    assert found.evidence["chance"][sure - 1] <= 0.1 * sure
    table = next(t for t in val_report.tables if t.title == "C2 suspicious labels")
    p_label = [row[table.columns.index("p(label)")] for row in table.rows]
    assert p_label == sorted(p_label)                       # ranked by self-confidence, lowest first



def test_worst_cases_are_the_highest_losses():
    pr = Predictions("classification", np.zeros((5, 2)), np.array([0, 1, 0, 1, 0]),
                     np.array([0.1, 2.0, 0.5, 2.0, 0.0]), probs=np.full((5, 2), 0.5))
    assert worst_cases(pr, 3).tolist() == [1, 3, 2]


# ------------------------------------------------------------------ slices
class WithMetadata(Dataset):
    def __init__(self, x, y, source):
        self.x, self.y, self.metadata = x, y, {"source": source, "id": list(range(len(y)))}

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_metadata_slices_find_the_failing_source_first():
    xt, yt, xv, yv = digits(800, 300, seed=1)
    model = train_linear(xt, yt)
    source = ["scanner_a"] * 200 + ["scanner_b"] * 100
    xv = xv.clone()
    g = torch.Generator().manual_seed(0)
    xv[200:] = xv[200:] + 0.8 * torch.randn(xv[200:].shape, generator=g)  # scanner b is noisy
    rep = case_study(Plain(), model, WithMetadata(xv, yv, source))
    f = next(f for f in rep.findings if f.name == "slices")
    assert f.status == "warn"
    first = f.evidence["slices"][0]
    assert first[:3] == ["meta:source", "source=scanner_b", 100] and first[5] is True
    assert "meta:id" not in f.evidence["groups"]  # identifiers are not slices
    assert rep.meta["metadata_keys"] == ["id", "source"]


def test_metadata_from_the_third_item_element_and_quiet_when_uniform():
    xt, yt, xv, yv = digits(800, 200, seed=2)
    model = train_linear(xt, yt)

    class Triples(Dataset):
        def __len__(self):
            return 200

        def __getitem__(self, i):
            return xv[i], yv[i], {"half": "first" if i < 100 else "second"}

    class TripleRecipe(Plain):
        def forward(self, model, batch):
            x, y, _meta = batch
            return model(x), y

    rep = case_study(TripleRecipe(), model, Triples())
    f = next(f for f in rep.findings if f.name == "slices")
    assert {"half=first", "half=second"} <= {s[1] for s in f.evidence["slices"]}
    assert f.status == "info"  # two random halves of clean digits: no slice stands out


def test_length_bins():
    n = 200
    lengths = np.arange(n) % 50 + 1
    correct = lengths < 38                      # long sequences fail
    targets = np.zeros(n, dtype=np.int64)
    probs = np.where(correct[:, None], [[0.9, 0.1]], [[0.1, 0.9]])
    pr = Predictions("classification", np.log(probs), targets, -np.log(probs[:, 0]), probs=probs, lengths=lengths)
    found = slices(pr)
    assert found[0].group == "length" and found[0].flagged and found[0].score == 0.0
    assert [s.name for s in found if s.group == "length"][0].startswith("length 38")


# -------------------------------------------------------------- regression
class Reg(danlu.Recipe):
    task = "regression"

    def data(self):
        raise NotImplementedError

    def model(self):
        return nn.Linear(3, 1)


def test_regression_residuals_and_bias(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(200, generator=g)
    model = nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
        model.bias.fill_(1.0)                          # a planted bias of +1
    rep = case_study(Reg(), model, TensorDataset(x, y), out_dir=tmp_path)
    res = next(f for f in rep.findings if f.name == "residuals")
    assert res.status == "warn" and res.evidence["mean"] == pytest.approx(1.0, abs=0.05)
    assert rep.finding("C3").status == "pass"
    assert (tmp_path / "cases" / "residuals.png").exists()
    s = residual_summary(np.array([1.0, 2.0, 4.0]), np.array([1.0, 1.0, 1.0]))
    assert (s["mean"], s["mae"], s["rmse"]) == pytest.approx((4 / 3, 4 / 3, np.sqrt(10 / 3)))


# ---------------------------------------------------------------- ensemble
def test_vote_and_probability_average_by_hand():
    t = np.array([0, 1, 1])

    def member(p):
        p = np.array(p, dtype=float)
        return Predictions("classification", np.log(p), t, np.zeros(3), probs=p)

    a = member([[0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    b = member([[0.4, 0.6], [0.45, 0.55], [0.3, 0.7]])
    c = member([[0.8, 0.2], [0.55, 0.45], [0.2, 0.8]])
    assert vote([a, b, c]).tolist() == [0, 0, 1]
    scores = {s.name: s for s in ensemble_scores([a, b, c], ["a", "b", "c"])}
    assert scores["a"].accuracy == pytest.approx(2 / 3)
    assert scores["b"].accuracy == pytest.approx(2 / 3)
    # averaged: [0.7, 0.3], [0.533, 0.467], [0.3, 0.7] -> predicts 0, 0, 1
    assert scores["prob-avg"].accuracy == pytest.approx(2 / 3)
    assert scores["prob-avg"].loss == pytest.approx(-np.mean(np.log([0.7, 1.4 / 3, 0.7])))


def test_ensemble_of_seeds_in_the_report(tmp_path):
    xt, yt, xv, yv = digits(600, 300, seed=4)
    models = [train_linear(xt, yt, steps=60, seed=s) for s in range(3)]
    rep = case_study(Plain(), models, TensorDataset(xv, yv), names=["s0", "s1", "s2"], out_dir=tmp_path)
    f = rep.finding("C4")
    names = [s["name"] for s in f.evidence["scores"]]
    assert names == ["s0", "s1", "s2", "prob-avg", "vote"]
    accs = {s["name"]: s["accuracy"] for s in f.evidence["scores"]}
    assert accs["prob-avg"] >= min(accs["s0"], accs["s1"], accs["s2"])
    suspicious = next(f for f in rep.findings if f.name == "suspicious labels")
    assert suspicious.evidence["probabilities"] == "ensemble average"
    # clean digits: no label looks wrong to the ensemble, so there is no suspicious-label picture
    assert suspicious.evidence["candidates"] == [] and "no label looks wrong" in suspicious.summary
    assert set(rep.images) == {"cases/confusion.png", "cases/worst.png"}
    for rel in rep.images:
        assert (tmp_path / rel).read_bytes()[:4] == b"\x89PNG"
    json.dumps(rep.to_dict(), allow_nan=False)


# ------------------------------------------------------------- data kinds
class SeqRecipe(danlu.Recipe):
    batch_size: int = 32

    def data(self):
        raise NotImplementedError

    def model(self):
        return nn.Sequential(nn.Flatten(), nn.Linear(20, 2))


@pytest.mark.parametrize("shape,kind,picture", [
    ((20, 1), "sequence 20x1", True),      # a univariate time series for a recurrent net
    ((3, 50), "sequence 3x50", True),      # channels x steps for a Conv1d
    ((20,), "[", False),                   # a feature vector: numbers in the table, no picture
    ((1, 8, 8), "image 1x8x8", True),      # an image
])
def test_inputs_are_shown_as_their_data_kind(tmp_path, shape, kind, picture):
    """C2's worst cases show each input the way its kind calls for: sequences are line plots, not
    "image 20x1"; feature vectors stay numbers in the table."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, *shape, generator=g)
    y = torch.randint(0, 2, (64,), generator=g)
    width = int(np.prod(shape))

    class R(SeqRecipe):
        def model(self):
            return nn.Sequential(nn.Flatten(), nn.Linear(width, 2))

    rep = case_study(R(), R().model(), TensorDataset(x, y), top_k=4, out_dir=tmp_path)
    table = next(t for t in rep.tables if t.title == "C2 worst cases")
    cells = [row[-1] for row in table.rows]
    assert all(c.startswith(kind) for c in cells), cells
    assert ("cases/worst.png" in rep.images) == picture


def test_token_ids_are_shown_as_tokens():
    x = torch.randint(1, 100, (40, 12), generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 2, (40,), generator=torch.Generator().manual_seed(2))

    class Tokens(SeqRecipe):
        def model(self):
            return nn.Sequential(nn.Embedding(100, 4), nn.Flatten(), nn.Linear(48, 2))

    rep = case_study(Tokens(), Tokens().model(), TensorDataset(x, y), top_k=3)
    table = next(t for t in rep.tables if t.title == "C2 worst cases")
    assert all(row[-1].startswith("12 tokens [") for row in table.rows)
