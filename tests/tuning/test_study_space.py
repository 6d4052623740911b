"""The --vary syntax (issue 7): ranges, log ranges, integer ranges, choices, and clear errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from danlu.recipe import load_recipe_class
from danlu.tuning.space import Param, SpaceError, parse_param, parse_vary

RECIPES = Path(__file__).parent / "recipes"


@pytest.fixture(scope="module")
def digits_cls():
    return load_recipe_class(Path(__file__).parents[2] / "examples" / "digits.py")


def test_the_documented_examples_parse(digits_cls):
    space = parse_vary(["lr=1e-5..1e-1:log", "weight_decay=0..0.1", "batch_size=16,32,64,128",
                        "hidden=16..256:log,int", "channels=4..32", "schedule=cosine,constant"], digits_cls)
    lr, wd, bs, hidden, channels, schedule = space.params
    assert (lr.kind, lr.low, lr.high, lr.log) == ("float", 1e-5, 1e-1, True)
    assert (wd.kind, wd.low, wd.high, wd.log) == ("float", 0.0, 0.1, False)
    assert bs.kind == "choice" and bs.choices == (16, 32, 64, 128) and all(type(c) is int for c in bs.choices)
    assert (hidden.kind, hidden.low, hidden.high, hidden.log) == ("int", 16, 256, True)
    assert channels.kind == "int"  # an int field makes a range integer without ':int'
    assert schedule.choices == ("cosine", "constant")
    dists = space.distributions()
    assert dists["lr"].log and dists["hidden"].step == 1 and dists["batch_size"].choices == (16, 32, 64, 128)


def test_tokens_round_trip(digits_cls):
    tokens = ["lr=1e-05..0.1:log", "hidden=16..256:log,int", "batch_size=16,32", "dropout=0.0..0.5"]
    space = parse_vary(tokens, digits_cls)
    assert parse_vary(space.tokens(), digits_cls) == space


@settings(max_examples=50, deadline=None)
@given(lo=st.floats(1e-8, 1e3), factor=st.floats(1.001, 1e4), log=st.booleans())
def test_any_float_range_round_trips(lo, factor, log):
    hi = lo * factor
    if not hi > lo or not math.isfinite(hi):
        return
    p = Param("x", "float", low=lo, high=hi, log=log)
    assert parse_param(p.token()) == p


@pytest.mark.parametrize("token, words", [
    ("lr", ["Cannot read vary token 'lr'", "NAME=LOW..HIGH"]),
    ("lr=", ["nothing after '='"]),
    ("lr=1e-3", ["single value", "fix it instead (lr=1e-3)"]),
    ("lr=1e-5..1e-1:lgo", ["Unknown option 'lgo'", "log"]),
    ("lr=1e-1..1e-5", ["empty or reversed", "LOW < HIGH"]),
    ("lr=0..1e-1:log", ["log range must be above 0", "drop ':log'"]),
    ("lr=1e-5..abc", ["'abc'", "not a number"]),
    ("lr=1..2..3", ["two numbers"]),
    ("hidden=16..100.5", ["integers", "hidden=16..101"]),
    ("schedule=0..1", ["cannot be a range", "choices"]),
    ("lr=1e-5..1e-1:int", ["float hyperparameter", "drop ':int'"]),
    ("batch_size=16,,64", ["empty choice"]),
    ("batch_size=16,16", ["twice"]),
    ("batch_size=16,sixty", ["batch_size expects int", "'sixty'"]),
    ("depth=1..4", ["has no hyperparameter 'depth'", "Valid fields", "hidden"]),
    ("1lr=1..2", ["not a hyperparameter name"]),
])
def test_bad_tokens_say_which_token_and_the_fix(digits_cls, token, words):
    with pytest.raises(Exception) as info:
        parse_vary([token], digits_cls)
    from danlu.errors import HyperparameterError

    assert isinstance(info.value, HyperparameterError)  # exit code 2 in the CLI
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_duplicates_conflicts_and_nothing_to_vary(digits_cls):
    with pytest.raises(SpaceError, match="varied twice"):
        parse_vary(["lr=1e-4..1e-2", "lr=1e-3..1e-1"], digits_cls)
    with pytest.raises(SpaceError, match=r"both varied .* and fixed"):
        parse_vary(["lr=1e-4..1e-2"], digits_cls, fixed=["lr"])
    with pytest.raises(SpaceError, match="Nothing to vary"):
        parse_vary([], digits_cls)


def test_edges_and_narrowing():
    lr = parse_param("lr=1e-5..1e-1:log")
    assert lr.edge(0.09) == "high" and lr.edge(1.2e-5) == "low" and lr.edge(1e-3) is None
    assert lr.position(1e-3) == pytest.approx(0.5)
    bs = parse_param("batch_size=16,32,64,128")
    assert bs.edge(128) == "high" and bs.edge(16) == "low" and bs.edge(32) is None
    assert parse_param("opt=adam,sgd").edge("sgd") is None  # unordered choices have no edge
    narrow = lr.narrowed([1e-3, 3e-3])
    assert 1e-5 < narrow.low < 1e-3 and 3e-3 < narrow.high < 1e-1 and narrow.log
    hidden = parse_param("hidden=16..256:log,int").narrowed([64, 64])
    assert hidden.kind == "int" and hidden.low < 64 < hidden.high
    assert bs.narrowed([32, 64]).choices == (32, 64)
    assert lr.contains(1e-3) and not lr.contains(1.0) and bs.contains(64) and not bs.contains(48)
