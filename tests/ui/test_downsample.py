"""Downsampling keeps what the eye must see (T1, T2): extremes, NaN, the ends; never
more than the budget; recomputed for a zoom window."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from danlu.ui.downsample import (
    DOWNSAMPLERS,
    downsample,
    lttb_indices,
    minmax_indices,
    window,
)

values_st = st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=3000)


@settings(max_examples=60, deadline=None)
@given(values=values_st, budget=st.integers(4, 500), method=st.sampled_from(sorted(DOWNSAMPLERS)))
def test_subset_sorted_within_budget_with_ends(values, budget, method):
    v = np.array(values, dtype=np.float64)
    s = np.arange(len(v)) * 3 + 7
    d = downsample(s, v, budget, method=method)
    assert len(d.steps) <= budget
    assert np.all(np.diff(d.steps) > 0)                          # sorted, no duplicates
    idx = (d.steps - 7) // 3
    assert np.array_equal(v[idx], d.values)                      # real points, never invented
    assert d.steps[0] == s[0] and d.steps[-1] == s[-1]           # both ends kept
    assert d.total == len(v)


@settings(max_examples=60, deadline=None)
@given(values=values_st, budget=st.integers(4, 500))
def test_minmax_keeps_global_extremes(values, budget):
    v = np.array(values, dtype=np.float64)
    d = downsample(np.arange(len(v)), v, budget, method="minmax")
    assert d.values.max() == v.max() and d.values.min() == v.min()


def test_minmax_keeps_a_single_spike_that_striding_would_lose():
    v = np.zeros(1_000_000)
    v[123_457] = 50.0                                            # one exploding batch
    d = downsample(np.arange(len(v)), v, 2000)
    assert 50.0 in d.values and 123_457 in d.steps
    strided = v[:: len(v) // 2000]                               # what a fixed sample shows
    assert 50.0 not in strided


def test_nan_is_kept_and_located():
    v = np.linspace(1, 0, 100_000)
    v[60_000:] = np.nan
    d = downsample(np.arange(len(v)), v, 500)
    assert d.nonfinite == 40_000 and d.first_nonfinite == 60_000
    assert 60_000 in d.steps and np.isnan(d.values[d.steps == 60_000][0])
    assert len(d.steps) <= 500
    clean = downsample(np.arange(10), np.arange(10.0), 5)
    assert clean.nonfinite == 0 and clean.first_nonfinite is None


def test_all_nan_bucket_does_not_break_minmax():
    v = np.full(10_000, np.nan)
    v[:10] = 1.0
    idx = minmax_indices(np.arange(len(v)), v, 100)
    assert len(idx) <= 100 and idx[0] == 0 and idx[-1] == len(v) - 1


def test_zoom_window_shows_every_point_inside():
    s = np.arange(1_000_000)
    v = np.sin(s / 1000.0)
    d = downsample(s, v, 2000, start=500_000, end=500_999)
    assert d.method == "none" and len(d.steps) == 1000
    assert d.steps[0] == 500_000 and d.steps[-1] == 500_999
    ws, wv = window(s, v, None, 9)
    assert len(ws) == 10


def test_short_series_untouched_and_unknown_method_named():
    d = downsample(np.arange(5), np.arange(5.0), 2000)
    assert d.method == "none" and len(d.steps) == 5
    with pytest.raises(ValueError, match="minmax"):
        downsample(np.arange(5), np.arange(5.0), 2, method="nope")


def test_lttb_keeps_the_shape_of_a_step():
    v = np.r_[np.zeros(5000), np.ones(5000)]
    idx = lttb_indices(np.arange(len(v)), v, 50)
    assert len(idx) <= 50 and v[idx].min() == 0 and v[idx].max() == 1


def test_million_points_downsample_fast():
    s = np.arange(1_000_000)
    v = np.random.default_rng(0).normal(size=len(s))
    downsample(s, v, 2000)
    t = time.perf_counter()
    downsample(s, v, 2000)
    assert time.perf_counter() - t < 0.1
