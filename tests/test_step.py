"""The one training step (danlu.step): `danlu check` trains exactly as `danlu train` does."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import danlu
from danlu.checks import Context, run_checks
from danlu.engine import fit
from danlu.step import TrainStep, prepare

SRC = Path(danlu.__file__).resolve().parent


class Clipped(danlu.Recipe):
    """Dropout, a high LR that makes clipping bite, warmup and a cosine schedule: every part of the step."""

    lr: float = 0.5
    grad_clip: float = 0.05
    warmup_steps: int = 3
    epochs: int = 2
    batch_size: int = 16

    def data(self):
        g = torch.Generator().manual_seed(1)
        x = torch.randn(96, 5, generator=g)
        y = (x[:, 0] - x[:, 1] > 0).long()
        return TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])

    def model(self):
        return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))


def test_check_takes_the_same_steps_as_train(store):
    """S11's short run is the real run's beginning: same data order, dropout masks, clipping and
    schedule, so its losses equal the ones `danlu train` logs, bit for bit."""
    recipe = Clipped()
    report = run_checks(recipe, only="S11", settings={"S11.steps": 4})   # one epoch of 4 batches
    checked = report.finding("S11").evidence["losses_a"]
    assert len(checked) == 4
    result = fit(Clipped(), store=store, progress=False)
    steps, trained = store.read_series(result.run_id, "train/loss")
    assert list(steps[:4]) == [1, 2, 3, 4]
    assert [float(v) for v in trained[:4]] == checked

    unclipped = run_checks(Clipped(grad_clip=0.0), only="S11", settings={"S11.steps": 4})
    assert unclipped.finding("S11").evidence["losses_a"][1:] != checked[1:]   # clipping changed the steps


def test_checks_get_the_recipes_optimizer_schedule_and_clipping():
    ctx = Context(Clipped())
    step = ctx.train_step(ctx.new_model(), steps=400)
    assert step.grad_clip == 0.05 and isinstance(step.optimizer, torch.optim.AdamW)
    assert step.lr == 0.5 * 0.01          # warmup starts at lr/100
    assert step.scheduler is not None
    step(ctx.batch(16))
    step(ctx.batch(16))
    assert 0.5 * 0.01 < step.lr < 0.5     # the schedule moved, as in a real run


def test_forward_backward_then_update_is_one_step():
    recipe = Clipped(lr=0.01, grad_clip=0.0)
    a, b = prepare(recipe), prepare(recipe)
    batch = next(iter(a.train_loader))
    torch.manual_seed(3)  # the same dropout masks for both
    whole = a.step(batch).loss
    torch.manual_seed(3)
    half = b.step.forward_backward(batch).loss
    b.step.update()
    assert torch.equal(whole, half)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


def test_only_the_step_trains():
    """Outside step.py, backward passes happen only where gradients serve another purpose, said in a comment."""
    import ast

    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "step.py":
            continue
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "backward":
                context = lines[max(0, node.lineno - 3): node.lineno]
                if not any("#" in line for line in context):
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not offenders, "train through danlu.step.TrainStep, or say why not:\n" + "\n".join(offenders)


def test_step_moves_batches_to_the_models_device():
    recipe = Clipped(lr=0.01)
    model = recipe.model()
    step = TrainStep.for_recipe(recipe, model, total_steps=10)
    assert step.device == torch.device("cpu")
    out = step((torch.randn(4, 5), torch.tensor([0, 1, 0, 1])))
    assert out.loss.shape == () and torch.isfinite(out.loss)


class LeastSquares(danlu.Recipe):
    """pytorch/examples' time-series example trains with LBFGS, whose step() needs a closure."""

    lr: float = 1.0
    epochs: int = 2
    batch_size: int = 64
    task = "regression"
    max_iter: int = 20

    def data(self):
        g = torch.Generator().manual_seed(2)
        x = torch.randn(80, 4, generator=g)
        y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.01 * torch.randn(80, generator=g)
        return TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])

    def model(self):
        return nn.Linear(4, 1)

    def forward(self, model, batch):
        x, y = batch
        return model(x).squeeze(-1), y

    def optimizer(self, params):
        return torch.optim.LBFGS(params, lr=self.lr, max_iter=self.max_iter)


def test_an_optimizer_that_needs_a_closure_trains(store):
    """LBFGS re-evaluates the loss inside step(): the step hands it a closure over the pending batch,
    and training solves least squares in its first step (it crashed: step() missing 'closure')."""
    result = fit(LeastSquares(), store=store, progress=False)
    assert result.status == "finished"
    _, losses = store.read_series(result.run_id, "train/loss")
    assert losses[0] > 1.0 and losses[-1] < 1e-3


def test_the_closure_reuses_the_first_evaluation_and_recomputes_the_rest():
    calls = []
    recipe = LeastSquares(max_iter=1)
    model = recipe.model()
    model.register_forward_hook(lambda *a: calls.append(1))
    step = TrainStep.for_recipe(recipe, model, total_steps=4)
    assert step.needs_closure
    train, _ = recipe.data()
    x, y = train.tensors
    step((x[:32], y[:32]))
    assert len(calls) == 1                 # max_iter=1: the gradients forward_backward left are enough
    step.optimizer.param_groups[0]["max_iter"] = 4
    step.window([(x[:16], y[:16]), (x[16:32], y[16:32])])
    assert len(calls) > 3 and len(calls) % 2 == 1    # 2 micro-batches, then each re-evaluation runs both


def test_float16_cannot_drive_a_closure_and_says_so():
    recipe = LeastSquares(precision="16")
    model = recipe.model()
    try:
        TrainStep.for_recipe(recipe, model, total_steps=4)
    except ValueError as exc:
        assert "LBFGS" in str(exc) and "bf16" in str(exc)
    else:
        raise AssertionError("float16 with LBFGS must be refused")
