"""A study worker loads a recipe's data once and reuses it while it would load the same (H4,
issue 16): the reuse must never change what a trial trains on or how it starts."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import IterableDataset, TensorDataset

import danlu
from danlu.data_reuse import kept_fingerprint, load_data, reusing_data
from danlu.step import prepare


class Counted(danlu.Recipe):
    """data() draws from the global RNG (as a random split or generated data does) and reads `n`."""

    n: int = 40
    width: int = 4
    lr: float = 1e-2

    def data(self):
        CALLS.append(type(self).__name__)
        x = torch.randn(self.n, 3)
        y = x.sum(1, keepdim=True)
        return TensorDataset(x[: self.n // 2], y[: self.n // 2]), TensorDataset(x[self.n // 2:], y[self.n // 2:])

    def model(self):
        return nn.Linear(3, self.width)


#: Names of the classes whose data() ran, in order.
CALLS: list[str] = []


def _fresh(cls=Counted, **values):
    CALLS.clear()
    return cls(**values)


def test_trials_that_differ_in_what_data_never_reads_share_one_load():
    first = _fresh(lr=1e-3)
    with reusing_data():
        a = load_data(first)
        b = load_data(Counted(lr=3e-2, width=8))
    assert len(CALLS) == 1 and a is b


def test_a_value_data_reads_or_the_seed_loads_again():
    with reusing_data():
        base = load_data(_fresh(n=40))
        assert load_data(Counted(n=60)) is not base and len(CALLS) == 2
        back = load_data(Counted(n=40))   # one data set is kept: the one before was let go
        assert back is not base and len(CALLS) == 3
        assert load_data(Counted(n=40, seed=1)) is not back and len(CALLS) == 4
        again = load_data(Counted(n=40, seed=1, lr=0.5))
        assert len(CALLS) == 4 and again[0].tensors[0].shape == (20, 3)


def test_outside_a_worker_data_is_loaded_every_time():
    load_data(_fresh())
    load_data(Counted())
    assert len(CALLS) == 2


def test_a_reused_trial_starts_from_the_same_weights_and_rng_as_a_loaded_one():
    """data() moved the global RNG; the model built after reuse must get the same numbers."""
    plain = prepare(_fresh())
    expected = [p.detach().clone() for p in plain.model.parameters()]
    after = torch.rand(3)
    with reusing_data():
        prepare(Counted())
        again = prepare(Counted(lr=0.1))
        drawn = torch.rand(3)
    assert len(CALLS) == 2  # one outside, one inside: the second inside reused it
    assert all(torch.equal(p, q) for p, q in zip(again.model.parameters(), expected))
    assert torch.equal(drawn, after)
    assert torch.equal(again.train.tensors[0], plain.train.tensors[0])


class SetsState(Counted):
    """data() that keeps something on the recipe (as the Lightning adapter keeps its loaders)."""

    def data(self):
        out = super().data()
        self.cached_loaders = "built"
        return out


class Stream(Counted):
    def data(self):
        CALLS.append("Stream")

        class Once(IterableDataset):
            def __iter__(self):
                yield torch.zeros(3), torch.zeros(1)

        return Once(), Once()


class CountsOnItsClass(Counted):
    """data() that writes to its class (a counter, a cache): the write must land on this class."""

    loads = 0

    def data(self):
        type(self).loads += 1
        return super().data()


class OptedOut(Counted):
    reuse_data = False


def test_data_with_side_effects_streams_and_opted_out_recipes_are_never_reused():
    for cls in (SetsState, CountsOnItsClass, Stream, OptedOut):
        with reusing_data():
            load_data(_fresh(cls))
            second = cls()
            load_data(second)
        assert len(CALLS) == 2, cls.__name__
        assert type(second) is cls
    assert CountsOnItsClass.loads == 2
    assert SetsState().__dict__.get("cached_loaders") is None


def test_the_recipe_keeps_its_class_and_an_error_in_data_propagates():
    class Broken(Counted):
        def data(self):
            raise FileNotFoundError("no such file: train.csv")

    recipe = Broken()
    with reusing_data():
        try:
            load_data(recipe)
        except FileNotFoundError as exc:
            assert "train.csv" in str(exc)
        else:
            raise AssertionError("the error was swallowed")
    assert type(recipe) is Broken


def test_the_fingerprint_of_kept_data_is_taken_once():
    made = []

    def make(train, val):
        made.append(1)
        return {"n": len(train)}

    with reusing_data():
        train, val = load_data(_fresh())
        assert kept_fingerprint(train, val, make) == {"n": 20}
        assert kept_fingerprint(train, val, make) == {"n": 20}
        other = TensorDataset(torch.zeros(2, 3), torch.zeros(2, 1))
        kept_fingerprint(other, val, make)
    assert len(made) == 2


def test_a_study_worker_loads_its_data_once(store, tmp_path):
    """Every trial of a sequential study (rounds, then TPE) trains on one load of data()."""
    from danlu.tuning.executors import Sequential
    from danlu.tuning.study import new_study

    calls = tmp_path / "calls"
    recipe = tmp_path / "counted.py"
    recipe.write_text(
        "import torch\nfrom torch import nn\nfrom torch.utils.data import TensorDataset\nimport danlu\n\n"
        "class Counted(danlu.Recipe):\n    epochs: int = 2\n    batch_size: int = 8\n    probe_every: int = 1\n"
        "    patience: int = 0\n    task = 'regression'\n\n"
        "    def data(self):\n"
        f"        with open({str(calls)!r}, 'a') as fh:\n            fh.write('x')\n"
        "        x = torch.randn(48, 2)\n        y = x.sum(1)\n"
        "        return TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:])\n\n"
        "    def model(self):\n        return nn.Linear(2, 1)\n\n"
        "    def forward(self, model, batch):\n        x, y = batch\n        return model(x).squeeze(-1), y\n")
    study = new_study(store, str(recipe), ["lr=1e-3..1e-1:log"], trials=6, name="once", prune="asha",
                      min_resource=1)
    calls.write_text("")   # new_study read the data to size the trials
    study.run(Sequential())
    trials = study.optuna_study(0).get_trials(deepcopy=False)
    assert len(trials) >= 6 and calls.read_text() == "x"
