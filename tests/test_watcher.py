"""danlu.watch: the S9 guard in a user's own loop, and per-layer gradient norms every N steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import danlu
from danlu.watcher import NonFiniteError, watch


class LogFeatures(nn.Module):
    def forward(self, h):
        return torch.log(h)  # planted: h has negative entries


class Magnitude(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4, bias=False)
        self.b = nn.Linear(4, 4, bias=False)

    def forward(self, x):
        return torch.sqrt(self.a(x) ** 2 + self.b(x) ** 2)  # planted: NaN gradient where both are 0


def make(kind: str) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential()
    if kind == "log":
        net.add_module("fc", nn.Linear(4, 8))
        net.add_module("logs", LogFeatures())
        net.add_module("head", nn.Linear(8, 3))
    elif kind == "sqrt":
        net.add_module("mag", Magnitude())
        net.add_module("head", nn.Linear(4, 3))
    else:
        net.add_module("fc", nn.Linear(4, 8))
        net.add_module("act", nn.ReLU())
        net.add_module("head", nn.Linear(8, 3))
    return net


def loop(model, optimizer, steps=3, zero_rows=False, loss_fn=None):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, 4, generator=g)
        if zero_rows:
            x[2] = 0.0
        y = torch.randint(0, 3, (8,), generator=g)
        out = model(x)
        loss = loss_fn(out, y) if loss_fn else F.cross_entropy(out, y)
        if optimizer is not None:
            optimizer.zero_grad()
        loss.backward()
        if optimizer is not None:
            optimizer.step()


def test_forward_nan_is_localised_to_module_op_and_line():
    model = make("log")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w = watch(model, opt, on_nonfinite="ignore")
    loop(model, opt, steps=2)
    (event,) = w.events
    ev = event.evidence
    assert event.id == "S9" and event.status == "fail"
    assert ev["phase"] == "forward" and ev["module"] == "logs" and ev["op"] == "log"
    assert "test_watcher.py" in ev["where"] and ev["step"] == 1
    assert w.nonfinite_steps[0] == 1  # later NaN steps are counted, not re-localised
    w.remove()


def test_backward_nan_is_localised_to_the_sqrt():
    model = make("sqrt")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w = watch(model, opt, on_nonfinite="ignore")
    loop(model, opt, steps=1, zero_rows=True)
    (event,) = w.events
    assert event.evidence["phase"] == "backward" and event.evidence["module"] == "mag"
    assert "SqrtBackward" in event.evidence["op"] and 2 in event.evidence["samples"]


def test_nan_from_the_users_loss_is_phase_loss():
    model = make("ok")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w = watch(model, opt, on_nonfinite="ignore")
    loop(model, opt, steps=1, loss_fn=lambda out, y: F.cross_entropy(out / 0.0, y))  # temperature 0
    (event,) = w.events
    assert event.evidence["phase"] == "loss"


def test_raise_mode_stops_before_the_bad_update():
    model = make("log")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    watch(model, opt, on_nonfinite="raise")
    with pytest.raises(NonFiniteError, match="forward pass"):
        loop(model, opt, steps=1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_gradient_norms_every_n_steps_without_a_run():
    model = make("ok")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w = watch(model, opt, every=2)
    loop(model, opt, steps=5)
    assert [step for step, _ in w.history] == [2, 4]
    record = w.history[0][1]
    assert set(record) == {"grad_norm/fc.weight", "grad_norm/fc.bias", "grad_norm/head.weight",
                           "grad_norm/head.bias", "grad_norm/total"}
    assert record["grad_norm/total"] > 0 and not w.events


def test_without_an_optimizer_the_guard_runs_once_per_backward():
    model = make("log")
    w = watch(model, every=1, on_nonfinite="ignore")
    loop(model, None, steps=1)
    assert w.step == 1 and w.events and w.events[0].evidence["module"] == "logs"


def test_remove_uninstalls_the_hooks():
    model = make("log")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w = watch(model, opt, on_nonfinite="ignore")
    w.remove()
    loop(model, opt, steps=1)
    assert not w.events and w.step == 0


def test_norms_and_nan_report_go_to_the_run(tmp_path):
    from danlu.store import open_store

    store = open_store(tmp_path / "store")
    model = make("ok")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with danlu.init(config={"lr": 0.1}, store=store) as run:
        watcher = danlu.watch(model, opt, run=run, every=1)
        loop(model, opt, steps=3)
        bad = make("log")
        bad_opt = torch.optim.SGD(bad.parameters(), lr=0.1)
        with watch(bad, bad_opt, run=run, on_nonfinite="ignore"):
            loop(bad, bad_opt, steps=1)
        watcher.remove()
        run.flush()
        steps, values = store.read_series(run.id, "grad_norm/total")
        assert steps.tolist() == [1, 2, 3] and (values > 0).all()
    (report,) = store.list_reports(run.id, kind="check")
    assert report.data["findings"][0]["evidence"]["module"] == "logs"


def test_a_model_whose_forward_is_never_called_is_reported_not_replayed():
    """A LightningModule-style loop calls the layers, never model(...): the NaN is still caught
    and reported, without a replay (there is no forward to replay) and without crashing."""
    torch.manual_seed(0)
    holder = nn.Module()
    holder.net = nn.Linear(4, 1)
    opt = torch.optim.SGD(holder.parameters(), lr=0.1)
    watcher = watch(holder, opt, on_nonfinite="ignore")
    loss = holder.net(torch.randn(8, 4)).sum() * float("nan")   # planted NaN, through the layer itself
    loss.backward()
    opt.step()
    watcher.remove()
    (event,) = watcher.events
    assert event.evidence["source"] == "danlu.watch" and watcher.nonfinite_steps
