"""Each audit check with a planted problem (it must fire, with the exact indices) and a clean case (quiet).

Clean data is a subset of scikit-learn's digits, which has no duplicates, no NaN and
no bad labels: nothing may be flagged there (false alarms count as much as misses).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from audit_planted import ItemDataset, RandomFlip, audit, digits, linear, recipe
from torch.utils.data import TensorDataset

from danlu.baseline import majority_baseline
from danlu.checks.audit.d1_classes import class_weights


def run(r, only=None, **kw):
    return audit(r, progress=False, only=only, **kw)


def by_name(report, name):
    found = [f for f in report.findings if f.name == name]
    assert found, f"no finding {name!r} in {[f.name for f in report.findings]}"
    return found[0]


@pytest.fixture(scope="module")
def clean_report():
    xt, yt, xv, yv = digits()
    r = recipe(TensorDataset(xt, yt), TensorDataset(xv, yv), model=lambda: linear(64, 10))
    return run(r, only=["D1", "D2", "D4", "D5", "D6", "D7"])


# ------------------------------------------------------------------- clean
def test_clean_digits_flags_nothing(clean_report):
    statuses = {(f.id, f.name): f.status for f in clean_report.findings}
    assert clean_report.status in ("pass", "info"), statuses
    assert not [k for k, s in statuses.items() if s in ("warn", "fail")]
    near = by_name(clean_report, "near duplicates")
    assert near.status == "pass" and near.evidence["train_pairs"] == 0 and near.evidence["val->train_pairs"] == 0
    assert by_name(clean_report, "train/val leakage").evidence["pairs"] == 0
    assert by_name(clean_report, "label range").evidence["num_classes"] == 10


# -------------------------------------------------------------------- D1
def test_imbalanced_split_reports_the_majority_baseline():
    g = torch.Generator().manual_seed(1)
    y_train = torch.tensor([0] * 450 + [1] * 50)
    y_val = torch.tensor([0] * 90 + [1] * 10)
    x_train, x_val = torch.randn(500, 4, generator=g), torch.randn(100, 4, generator=g)
    r = recipe(TensorDataset(x_train, y_train), TensorDataset(x_val, y_val), model=lambda: linear(4, 2))
    rep = run(r, only=["D1"])
    balance = by_name(rep, "class balance")
    assert balance.status == "warn"
    assert balance.evidence["imbalance_ratio"] == pytest.approx(9.0)
    assert balance.evidence["class_weights"] == pytest.approx([500 / (2 * 450), 500 / (2 * 50)])
    assert "WeightedRandomSampler" in balance.fix and "weight=torch.tensor" in balance.fix
    base = by_name(rep, "majority baseline")
    assert base.evidence["majority_class"] == 0
    assert base.evidence["val_accuracy"] == pytest.approx(0.9)
    assert "90.0%" in base.summary
    assert rep.tables[0].rows[0][:2] == [0, 450]


def test_missing_class_and_shifted_proportions():
    g = torch.Generator().manual_seed(2)
    y_train = torch.arange(300) % 3
    y_val = torch.tensor([0] * 60 + [1] * 40)        # class 2 never in validation
    r = recipe(TensorDataset(torch.randn(300, 4, generator=g), y_train),
               TensorDataset(torch.randn(100, 4, generator=g), y_val), model=lambda: linear(4, 3))
    f = by_name(run(r, only=["D1"]), "class balance")
    assert f.status == "warn"
    assert f.evidence["missing"]["val"] == [2]
    assert "stratif" in f.fix


def test_a_head_wider_than_the_labels_is_noted_not_flagged():
    xt, yt, xv, yv = digits(300, 100)
    r = recipe(TensorDataset(xt, yt), TensorDataset(xv, yv), model=lambda: linear(64, 12))
    f = by_name(run(r, only=["D1"]), "class balance")
    assert f.status == "pass" and f.evidence["unused_classes"] == [10, 11]
    assert f.evidence["missing"] == {"train": [], "val": []}
    assert "never appear: 10, 11" in f.summary


def test_many_classes_keep_the_table_short():
    g = torch.Generator().manual_seed(8)
    y = torch.arange(2000) % 100
    r = recipe(TensorDataset(torch.randn(2000, 3, generator=g), y), TensorDataset(torch.randn(100, 3), y[:100]))
    rep = run(r, only=["D1"])
    assert len(rep.tables[0].rows) == 30 and "15 rarest" in rep.tables[0].title


def test_majority_helpers():
    assert majority_baseline(np.array([1, 1, 2]), np.array([1, 2, 2, 2])) == (1, 0.25)
    assert class_weights(np.array([10, 30, 0])).tolist() == pytest.approx([40 / 30, 40 / 90, 0.0])


def test_regression_targets_get_a_mean_baseline():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, 3, generator=g)
    y = 2.0 + torch.randn(200, generator=g)
    r = recipe(TensorDataset(x[:150], y[:150]), TensorDataset(x[150:], y[150:]))
    f = by_name(run(r, only=["D1"]), "mean baseline")
    expected = float(((y[150:] - y[:150].mean()) ** 2).mean())
    assert f.evidence["val_mse_of_mean"] == pytest.approx(expected, rel=1e-5)


# -------------------------------------------------------------------- D5
def test_validation_copies_of_training_samples_are_leakage_with_exact_indices():
    xt, yt, xv, yv = digits()
    planted = {3: 17, 50: 400, 199: 0}                 # val index -> train index it copies
    for v, t in planted.items():
        xv[v], yv[v] = xt[t], yt[t]
    r = recipe(TensorDataset(xt, yt), TensorDataset(xv, yv), model=lambda: linear(64, 10))
    rep = run(r, only=["D5"])
    leak = by_name(rep, "train/val leakage")
    assert leak.status == "fail" and rep.status == "fail"
    assert sorted(map(tuple, leak.evidence["pair_list"])) == sorted((t, v) for v, t in planted.items())
    assert leak.evidence["val_indices_leaked"] == 3
    assert by_name(rep, "near duplicates").evidence["val->train_pairs"] == 0  # exact copies are not double-counted


def test_duplicates_within_a_split_and_conflicting_labels():
    xt, yt, xv, yv = digits()
    xt[10], yt[10] = xt[20], yt[20]                    # same input, same label
    xt[30], yt[30] = xt[40], (yt[40] + 1) % 10         # same input, different label
    r = recipe(TensorDataset(xt, yt), TensorDataset(xv, yv), model=lambda: linear(64, 10))
    f = by_name(run(r, only=["D5"]), "exact duplicates")
    assert f.status == "warn"
    assert sorted(f.evidence["train"]["group_list"]) == [[10, 20], [30, 40]]
    assert f.evidence["train"]["conflict_list"] == [[30, 40]]


def test_near_duplicate_pairs_are_found():
    xt, yt, xv, yv = digits()
    g = torch.Generator().manual_seed(4)
    xt[100] = (xt[5] + 0.02 * torch.randn(xt[5].shape, generator=g)).clamp(0, 1)  # small noise copy
    xt[200] = xt[6].clone()
    xt[200, 0, 3, 4] = 1.0 - xt[200, 0, 3, 4]                                       # one pixel changed
    xv[7] = (xt[300] + 0.02 * torch.randn(xt[300].shape, generator=g)).clamp(0, 1)  # near copy across splits
    r = recipe(TensorDataset(xt, yt), TensorDataset(xv, yv), model=lambda: linear(64, 10))
    f = by_name(run(r, only=["D5"]), "near duplicates")
    assert f.status == "warn"
    within = {tuple(p[:2]) for p in f.evidence["pair_list"]["train"]}
    assert within == {(5, 100), (6, 200)}
    assert [tuple(p[:2]) for p in f.evidence["pair_list"]["val->train"]] == [(300, 7)]
    assert f.evidence["pair_list"]["val"] == []


def test_near_duplicates_in_feature_vectors():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(400, 30, generator=g) * torch.logspace(-1, 2, 30)  # features on very different scales
    y = torch.randint(0, 2, (400,), generator=g)
    x[399] = x[0] * (1 + 0.001 * torch.randn(30, generator=g))
    r = recipe(TensorDataset(x[:350], y[:350]), TensorDataset(x[350:], y[350:]), model=lambda: linear(30, 2))
    f = by_name(run(r, only=["D5"]), "near duplicates")
    assert [tuple(p[:2]) for p in f.evidence["pair_list"]["val->train"]] == [(0, 49)]
    assert f.evidence["train_pairs"] == 0 and f.evidence["val_pairs"] == 0


def test_augmented_training_items_are_reported_not_silently_passed():
    xt, yt, xv, yv = digits(200, 50)
    r = recipe(RandomFlip(TensorDataset(xt, yt)), TensorDataset(xv, yv), model=lambda: linear(64, 10))
    f = by_name(run(r, only=["D5"]), "train/val leakage")
    assert f.status == "skip" and f.evidence["random_train_items"] and "augmentation" in f.summary


# -------------------------------------------------------------------- D6
def test_nan_and_unreadable_samples_are_listed_and_the_audit_continues():
    xt, yt, xv, yv = digits(300, 100)
    items = [(xt[i], int(yt[i])) for i in range(300)]
    items[7] = OSError("cannot open 7.png")
    items[8] = (xt[8].clone().fill_(float("nan")), int(yt[8]))
    bad = xt[9].clone()
    bad[0, 0, 0] = float("inf")
    items[9] = (bad, int(yt[9]))
    val = ItemDataset([(xv[i], float("nan") if i == 4 else int(yv[i])) for i in range(100)])
    r = recipe(ItemDataset(items), val, model=lambda: linear(64, 10))
    rep = run(r)
    unreadable = by_name(rep, "unreadable samples")
    assert unreadable.status == "fail"
    assert unreadable.evidence["train"]["problems"] == [[7, unreadable.evidence["train"]["problems"][0][1]]]
    assert "OSError: cannot open 7.png" in unreadable.evidence["train"]["problems"][0][1]
    nonfinite = by_name(rep, "NaN/Inf values")
    assert [p[0] for p in nonfinite.evidence["train"]["problems"]] == [8, 9]
    assert "64 NaN" in nonfinite.evidence["train"]["problems"][0][1]
    assert "1 Inf" in nonfinite.evidence["train"]["problems"][1][1]
    assert [p[0] for p in nonfinite.evidence["val"]["problems"]] == [4]
    # every other check still ran and reported
    assert {f.id for f in rep.findings} >= {"D1", "D2", "D3", "D4", "D5", "D6", "D7", "D8"}
    assert not [f for f in rep.findings if "crashed" in f.summary]
    assert by_name(rep, "normalisation").status == "pass"  # statistics skip the NaN samples


def test_out_of_range_labels():
    xt, yt, xv, yv = digits(300, 100)
    yt[[11, 12]] = torch.tensor([-1, 10])
    yv[5] = 12
    r = recipe(TensorDataset(xt, yt), TensorDataset(xv, yv), model=lambda: linear(64, 10))
    f = by_name(run(r, only=["D6"]), "label range")
    assert f.status == "fail"
    assert [p[0] for p in f.evidence["train"]["problems"]] == [11, 12]
    assert [p[0] for p in f.evidence["val"]["problems"]] == [5]
    assert f.evidence["num_classes_from"] == "the model's output size"


def test_declared_class_count_without_a_model():
    xt, yt, xv, yv = digits(300, 100)
    yt[0] = 10
    r = recipe(TensorDataset(xt, yt), TensorDataset(xv, yv), num_classes=10)
    f = by_name(run(r, only=["D6"]), "label range")
    assert [p[0] for p in f.evidence["train"]["problems"]] == [0]
    assert "declared" in f.evidence["num_classes_from"]


def test_model_and_declared_class_counts_disagree():
    xt, yt, xv, yv = digits(300, 100)
    r = recipe(TensorDataset(xt, yt), TensorDataset(xv, yv), model=lambda: linear(64, 10), num_classes=12)
    f = by_name(run(r, only=["D6"]), "class count")
    assert f.status == "warn" and "10 outputs" in f.summary and "12" in f.summary


# -------------------------------------------------------------------- D2
def test_token_lengths_and_padding():
    g = torch.Generator().manual_seed(6)
    lengths = torch.randint(5, 40, (400,), generator=g)
    x = torch.zeros(400, 256, dtype=torch.int64)
    for i, n in enumerate(lengths.tolist()):
        x[i, :n] = torch.randint(1, 1000, (n,), generator=g)
    y = torch.randint(0, 2, (400,), generator=g)
    r = recipe(TensorDataset(x[:300], y[:300]), TensorDataset(x[300:], y[300:]))
    f = by_name(run(r, only=["D2"]), "sequence lengths")
    ev = f.evidence["train"]
    assert f.status == "warn" and ev["padded_to"] == 256
    assert ev["max"] == int(lengths[:300].max())
    assert ev["p99"] == pytest.approx(np.ceil(np.quantile(lengths[:300].numpy(), 0.99)))
    assert ev["suggested_max_length"] % 8 == 0 and ev["suggested_max_length"] >= ev["p99"]


def test_unpadded_variable_length_token_lists():
    items = [(torch.arange(1, n + 1), 0) for n in range(1, 101)]
    r = recipe(ItemDataset(items), ItemDataset(items[:10]))
    f = by_name(run(r, only=["D2"]), "sequence lengths")
    assert f.status == "info"
    assert f.evidence["train"]["max"] == 100 and f.evidence["train"]["p95"] == 96
    assert f.evidence["train"]["padded_to"] is None


def test_image_sizes_and_mixed_channels():
    items = [(torch.rand(3, 20 + i % 3, 30), 0) for i in range(30)] + [(torch.rand(1, 20, 30), 1)]
    r = recipe(ItemDataset(items), ItemDataset(items[:5]))
    f = by_name(run(r, only=["D2"]), "image sizes")
    assert f.status == "warn" and "1 image(s) with 1 channel(s)" in f.summary
    assert f.evidence["train"]["distinct_sizes"] == 3


def test_boxes_give_anchor_suggestions_and_degenerate_boxes_fail():
    rng = np.random.default_rng(0)
    items = []
    for i in range(60):
        w, h = (10, 20) if i % 2 else (60, 30)
        boxes = torch.tensor([[5.0, 5.0, 5.0 + w + rng.normal(0, 0.5), 5.0 + h + rng.normal(0, 0.5)]])
        items.append((torch.rand(3, 16, 16), {"boxes": boxes, "labels": torch.tensor([i % 2])}))
    items[3][1]["boxes"][0, 2] = 1.0                    # x2 < x1
    r = recipe(ItemDataset(items), ItemDataset(items[:4]))
    rep = run(r, only=["D2", "D6"])
    anchors = np.array(by_name(rep, "box sizes").evidence["anchors"])
    assert len(anchors) == 2
    assert np.allclose(anchors, [[10, 20], [60, 30]], atol=1.5)
    boxes = by_name(rep, "boxes")
    assert boxes.status == "fail" and [p[0] for p in boxes.evidence["train"]["problems"]] == [3]


# -------------------------------------------------------------------- D4
def test_raw_pixels_warn_with_a_normalize_line():
    xt, yt, xv, yv = digits(300, 100)
    r = recipe(TensorDataset(xt * 255, yt), TensorDataset(xv * 255, yv))
    f = by_name(run(r, only=["D4"]), "normalisation")
    assert f.status == "warn" and "far from mean 0 / std 1" in f.summary
    mean = float((xt * 255).mean())
    std = float((xt * 255).std())
    assert f.evidence["mean"][0] == pytest.approx(mean, rel=1e-4)
    assert f.evidence["std"][0] == pytest.approx(std, rel=1e-3)
    assert f.fix.endswith(f"transforms.Normalize(mean=[{mean:.4g}], std=[{f.evidence['std'][0]:.4g}])")


def test_validation_on_another_scale_warns():
    xt, yt, xv, yv = digits(300, 100)
    m, s = xt.mean(), xt.std()
    r = recipe(TensorDataset((xt - m) / s, yt), TensorDataset(xv, yv))  # val not normalised
    f = by_name(run(r, only=["D4"]), "normalisation")
    assert f.status == "warn" and "validation is on another scale" in f.summary
    r = recipe(TensorDataset((xt - m) / s, yt), TensorDataset((xv - m) / s, yv))
    assert by_name(run(r, only=["D4"]), "normalisation").status == "pass"


@pytest.mark.parametrize("val_items", [3, 12])
def test_a_few_validation_items_are_judged_against_their_chance_spread(val_items):
    """pytorch/examples' sine-wave LSTM validates on 3 sequences: their per-feature means and stds
    differ from training by chance, and D4 said "validation is on another scale" in 53 of 199
    features. Clean: a few items of the training distribution stay quiet; planted: the same few
    items x10 or shifted by 5 standard deviations still warn."""
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(100 + val_items, 199, generator=g), torch.randint(0, 2, (100 + val_items,), generator=g)
    train = TensorDataset(x[:100], y[:100])
    for val, status in ((x[100:], "pass"), (10 * x[100:], "warn"), (x[100:] + 5, "warn")):
        f = by_name(run(recipe(train, TensorDataset(val, y[100:]), model=lambda: linear(199, 2)), only=["D4"]),
                    "normalisation")
        assert f.status == status, f.summary
        assert ("validation is on another scale" in f.summary) == (status == "warn")


def test_feature_scales_that_differ_warn():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(300, 5, generator=g) * torch.tensor([1.0, 1.0, 1.0, 1.0, 0.001])
    y = torch.randint(0, 2, (300,), generator=g)
    f = by_name(run(recipe(TensorDataset(x[:200], y[:200]), TensorDataset(x[200:], y[200:])), only=["D4"]),
                "normalisation")
    assert f.status == "warn" and "feature scales differ" in f.summary
    assert f.fix.startswith("Normalise") and "torch.tensor([" in f.fix


# -------------------------------------------------------------------- D7
def test_augmented_validation_fails_and_unshuffled_training_warns(clean_report):
    from torch.utils.data import DataLoader

    xt, yt, xv, yv = digits(200, 50)

    def loaders(self, train, val):
        return DataLoader(train, batch_size=32), DataLoader(val, batch_size=32)

    r = recipe(TensorDataset(xt, yt), RandomFlip(TensorDataset(xv, yv)), loaders=loaders)
    rep = run(r, only=["D7"])
    assert by_name(rep, "validation augmentation").status == "fail"   # one verdict, shared with danlu check
    assert by_name(rep, "shuffling").status == "warn"
    assert by_name(clean_report, "validation augmentation").status == "pass"
    assert by_name(clean_report, "shuffling").status == "pass"


def test_near_duplicate_rule_is_calibrated_on_all_of_digits():
    """The calibration behind close_ratio and SPARSE_FRACTION (D5): on all 1,797 digits (intrinsic
    dimension about 7.6) chance puts no pair within the "close" distance, so none is flagged, while a
    copy with a little noise or one changed pixel is."""
    from audit_planted import _digits

    from danlu.checks.audit.neighbours import close_ratio, intrinsic_dimension, knn, near_pairs, prepare, typical_distance

    x, _ = _digits()
    v = prepare(x.reshape(len(x), -1).numpy(), "image")
    nn_all = knn(v, v, same=True)
    typical = typical_distance(nn_all)
    ratio = close_ratio(len(v), intrinsic_dimension(nn_all))
    assert 6 < intrinsic_dimension(nn_all) < 10 and 0.15 < ratio < 0.3
    closest = float(nn_all[0][:, 0].min())
    assert closest > ratio * typical                            # the margin the rule relies on
    assert near_pairs(v, v, typical=typical, same=True, neighbours=nn_all) == []
    noisy = x[0] + 0.02 * torch.randn(x[0].shape, generator=torch.Generator().manual_seed(0))
    edited = x[1].clone()
    edited[0, 4, 4] = 1.0 - edited[0, 4, 4]
    q = prepare(torch.stack([noisy, edited]).reshape(2, -1).numpy(), "image")
    assert [(p.a, p.b) for p in near_pairs(q, v, typical=typical, same=False, ratio=ratio)] == [(0, 0), (1, 1)]


def test_ordinary_neighbours_in_low_dimensions_are_not_copies():
    """D5 false alarm guard: in 2-D (600 points, like two moons) the nearest neighbour of some point is
    always very close by chance; the chance-calibrated rule flags none of them, and still finds a copy."""
    from danlu.checks.audit.neighbours import close_ratio, intrinsic_dimension, knn, near_pairs, prepare, typical_distance

    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 2, generator=g)
    v = prepare(x.numpy(), "features")
    nn = knn(v, v, same=True)
    assert 1.5 < intrinsic_dimension(nn) < 2.5 and close_ratio(600, intrinsic_dimension(nn)) < 0.02
    assert near_pairs(v, v, typical=typical_distance(nn), same=True, neighbours=nn) == []
    x[599] = x[0] + 1e-6                                           # a copy with float noise
    v = prepare(x.numpy(), "features")
    nn = knn(v, v, same=True)
    assert [(p.a, p.b) for p in near_pairs(v, v, typical=typical_distance(nn), same=True, neighbours=nn)] == [(0, 599)]


def test_faint_noise_on_near_constant_features_does_not_hide_a_copy():
    """D5: a feature that barely varies is not blown up to unit scale, so faint noise on it (a copy
    re-exported with rounding noise) leaves the pair close; without copies nothing is flagged."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(300, 10, generator=g)
    x[:, 7:] = 5.0 + 1e-3 * torch.randn(300, 3, generator=g)        # three near-constant features
    y = torch.randint(0, 2, (300,), generator=g)
    clean = run(recipe(TensorDataset(x[:250], y[:250]), TensorDataset(x[250:], y[250:]),
                       model=lambda: linear(10, 2)), only=["D5"])
    assert by_name(clean, "near duplicates").status == "pass"
    x[299] = x[3] + 1e-3 * torch.randn(10, generator=g)
    f = by_name(run(recipe(TensorDataset(x[:250], y[:250]), TensorDataset(x[250:], y[250:]),
                           model=lambda: linear(10, 2)), only=["D5"]), "near duplicates")
    assert [tuple(p[:2]) for p in f.evidence["pair_list"]["val->train"]] == [(3, 49)]


@pytest.mark.parametrize("layout", ["steps_features", "channels_steps"])
def test_sequences_are_audited_as_sequences_not_images(layout):
    """(T, F) items for a recurrent net and (C, T) items for a Conv1d are sequences: D4 judges the scale
    per feature along the shorter axis and its line broadcasts on that axis, D5 compares them as
    vectors. Planted: the validation split on another scale (x10); clean: both splits standardised."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(300, 40, 3, generator=g)                     # 300 items, 40 steps, 3 features
    if layout == "channels_steps":
        x = x.transpose(1, 2).contiguous()                       # (3, 40)
    y = torch.randint(0, 2, (300,), generator=g)
    clean = run(recipe(TensorDataset(x[:200], y[:200]), TensorDataset(x[200:], y[200:]),
                       model=lambda: linear(120, 2)), only=["D2", "D4", "D5"])
    d4 = by_name(clean, "normalisation")
    assert d4.status == "pass" and len(d4.evidence["mean"]) == 3
    view = ".view(-1, 1)" if layout == "channels_steps" else ""
    assert d4.evidence["snippet"].endswith(f"){view}") and "Normalize" not in d4.evidence["snippet"]
    assert "sequence" in by_name(clean, "input sizes").summary
    assert by_name(clean, "near duplicates").status == "pass"
    shifted = run(recipe(TensorDataset(x[:200], y[:200]), TensorDataset(10 * x[200:], y[200:]),
                         model=lambda: linear(120, 2)), only=["D4"])
    assert by_name(shifted, "normalisation").status == "warn"
    assert "validation is on another scale" in by_name(shifted, "normalisation").summary
