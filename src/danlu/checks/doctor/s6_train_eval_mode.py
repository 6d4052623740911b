"""S6: dropout and batch-norm behave differently in train and eval mode, and BN statistics update."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from danlu.batches import leaves
from danlu.checks.base import Check, register
from danlu.report import Finding

__all__ = ["TrainEvalMode"]


def _mode_dependent(module: nn.Module) -> bool:
    return isinstance(module, (_DropoutNd, _BatchNorm, nn.AlphaDropout, nn.FeatureAlphaDropout))


def _summary(value: Any) -> tuple[float, float]:
    total, absolute = 0.0, 0.0
    for leaf in leaves(value):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point():
            t = leaf.detach().double()
            total += float(t.sum())
            absolute += float(t.abs().sum())
    return total, absolute


def _same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    scale = abs(a[1]) + abs(b[1]) + 1e-12
    return abs(a[0] - b[0]) <= 1e-6 * scale and abs(a[1] - b[1]) <= 1e-6 * scale


def _outputs_equal(a: Any, b: Any) -> bool:
    la, lb = leaves(a), leaves(b)
    if len(la) != len(lb):
        return False
    for x, y in zip(la, lb):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.shape != y.shape:
                return False
            if x.is_floating_point():
                if not torch.allclose(x, y, rtol=1e-5, atol=1e-7, equal_nan=True):
                    return False
            elif not torch.equal(x, y):
                return False
    return True


class _CallRecorder:
    """Forward hooks recording, per module call, its mode and summaries of its input and output."""

    def __init__(self, model: nn.Module) -> None:
        self.calls: list[tuple[str, bool, tuple[float, float], tuple[float, float]]] = []
        self._pending: dict[str, tuple[float, float]] = {}
        self.handles = []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._pre(name)))
            self.handles.append(module.register_forward_hook(self._post(name)))

    def _pre(self, name):
        def hook(module, args):
            self._pending[name] = _summary(args)
        return hook

    def _post(self, name):
        def hook(module, args, output):
            self.calls.append((name, module.training, self._pending.pop(name, (0.0, 0.0)), _summary(output)))
        return hook

    def reset(self) -> None:
        self.calls = []

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@register
class TrainEvalMode(Check):
    """Train/eval mode: dropout and batch-norm behave as they should in each mode.

    Detects: modules stuck in eval mode during training (an overridden train(), a forward
    that calls .eval(), a recipe.forward that switches the model to eval); batch-norm
    whose running statistics do not change in training; randomness left on in eval mode
    (F.dropout without training=self.training), named by the first module whose output
    differs; dropout that has no effect in training. Sampling by design (a VAE's
    torch.randn_like, MC dropout written with training=True) is told apart and only warned.
    Why: practice S6. Dropout and batch-norm behave differently in train and eval mode; a
    module in the wrong mode trains without regularisation or with frozen statistics, and
    random eval outputs make validation noisy and checkpoints unrepeatable.
    How: calls model.train(), runs recipe.forward on a batch with forward hooks recording
    each module's mode at call time and batch-norm buffers before and after; then runs the
    model twice in eval mode on the same batch and compares outputs module by module;
    with dropout present, runs twice in train mode and expects different outputs. When eval
    outputs differ, replays the eval pass under a torch-function tracer to find explicit
    random draws in the user's code.
    Thresholds: any trainable module (or dropout/batch-norm) in eval mode during training
    fails, as do unchanged batch-norm statistics and eval outputs that differ by more than
    rtol 1e-5, unless every random draw is an explicit sampling call in the user's forward
    (then a warning: intended, but validation numbers vary); frozen sub-models kept in eval
    mode (all parameters requires_grad=False) are intentional and only noted; dropout
    without effect warns. Budget: S6.samples (32).
    Fix: do not call .eval() inside forward or override train() for trainable parts; use
    nn.Dropout modules or F.dropout(x, p, training=self.training); freeze batch-norm only
    together with its parameters.
    Cannot see: mode bugs in code paths this batch does not take; layers with their own
    training flag instead of nn.Module.training; randomness in the data pipeline
    (augmentation is D7's); batch-norm written with F.batch_norm(training=True) is
    deterministic for one batch (S10 sees the batch coupling).
    """

    id = "S6"
    name = "train/eval mode"
    stage = "model"
    settings = ("samples",)
    samples = 32

    def run(self, ctx) -> Finding:
        model = ctx.new_model()
        batch = ctx.batch(max(2, min(ctx.batch_size, self.samples)))
        modules = dict(model.named_modules())
        model.train()
        stuck_after_train = {name for name, m in modules.items() if not m.training}
        bns = {name: m for name, m in modules.items()
               if isinstance(m, _BatchNorm) and m.track_running_stats and m.running_mean is not None}
        before = {name: (m.running_mean.clone(), m.running_var.clone()) for name, m in bns.items()}
        recorder = _CallRecorder(model)
        try:
            with torch.no_grad():
                out_train, _ = ctx.forward(model, batch)
            train_calls = list(recorder.calls)
            called = {name for name, *_ in train_calls}
            in_eval = {name for name, training, *_ in train_calls if not training}
            flipped = {name for name, m in modules.items() if not m.training} - stuck_after_train
            bn_frozen_stats = [name for name, m in bns.items() if name in called
                               and torch.equal(before[name][0], m.running_mean)
                               and torch.equal(before[name][1], m.running_var)]
            dropouts = [name for name in called if isinstance(modules[name], _DropoutNd)
                        and getattr(modules[name], "p", 0) > 0]

            dropout_inert = False
            if dropouts and not (in_eval | flipped | stuck_after_train):
                model.train()
                with torch.no_grad():
                    out_train2, _ = ctx.forward(model, batch)
                dropout_inert = _outputs_equal(out_train, out_train2)

            model.eval()
            recorder.reset()
            with torch.no_grad():
                out_a, _ = ctx.forward(model, batch)
            calls_a = list(recorder.calls)
            recorder.reset()
            with torch.no_grad():
                out_b, _ = ctx.forward(model, batch)
            calls_b = list(recorder.calls)
        finally:
            recorder.remove()
            model.train()

        ev: dict[str, Any] = {
            "dropout": sorted(n for n, m in modules.items() if isinstance(m, _DropoutNd)),
            "batchnorm": sorted(bns),
        }
        problems: list[tuple[str, str, str, str]] = []
        notes: list[str] = []

        # --- modules in eval mode while training ------------------------------------
        stuck = stuck_after_train | in_eval | flipped
        tops = sorted(n for n in stuck if not any(n.startswith(o + ".") or (o == "" and n) for o in stuck if o != n))
        bad_tops, frozen_tops = [], []
        for top in tops:
            sub = modules[top]
            params = list(sub.parameters())
            if any(p.requires_grad for p in params):
                bad_tops.append(top)
            elif params:
                frozen_tops.append(top)
            elif any(_mode_dependent(m) for m in sub.modules()):
                bad_tops.append(top)
        if bad_tops:
            label = ", ".join(f"'{t or '(model)'}' ({type(modules[t]).__name__})" for t in bad_tops[:5])
            why = []
            if stuck_after_train & set(bad_tops):
                why.append("stays in eval mode after model.train() (an overridden train()?)")
            if (in_eval | flipped) & set(bad_tops):
                why.append("is switched to eval mode by the forward pass "
                           "(a .eval() call in forward or recipe.forward?)")
            ev["stuck_in_eval"] = bad_tops
            problems.append((
                "fail", f"{label} run in eval mode during training",
                f"the module {' and '.join(why)}; its dropout is off and its batch-norm uses frozen statistics",
                "remove the .eval() call / train() override; call model.train() before training steps "
                "(the engine does) and model.eval() only for evaluation",
            ))
        if frozen_tops:
            ev["frozen_in_eval"] = frozen_tops
            notes.append(f"frozen {', '.join(frozen_tops[:3])} kept in eval mode")

        # --- batch-norm statistics ---------------------------------------------------
        stale = [n for n in bn_frozen_stats if n not in stuck and not any(n.startswith(t + ".") for t in stuck)]
        stale_bad = [n for n in bn_frozen_stats if n not in frozen_tops
                     and not any(n.startswith(t + ".") for t in frozen_tops)]
        if stale_bad and not bad_tops:
            ev["bn_stats_unchanged"] = stale_bad
            problems.append((
                "fail",
                f"batch-norm running statistics of {', '.join(stale_bad[:4])} did not change in a training step",
                "the layer runs in eval mode or with momentum 0, so evaluation uses its initial statistics",
                "keep batch-norm in train mode during training (and momentum > 0)",
            ))
        elif stale:
            ev["bn_stats_unchanged"] = stale

        # --- eval determinism ----------------------------------------------------------
        intended: list[tuple[str, str]] = []
        if not _outputs_equal(out_a, out_b):
            model.eval()
            try:
                intended = _intended_randomness(ctx, model, batch)
            finally:
                model.train()
        if intended:
            op, where = intended[0]
            ev["eval_sampling"] = [f"{o} at {w}" for o, w in intended[:5]]
            problems.append((
                "warn", f"eval-mode outputs are random by design: {op} at {where}",
                "the forward samples on purpose (a VAE's reparameterisation, MC dropout), so validation "
                "losses and metrics vary between evaluations of the same weights",
                "intended: evaluate with a fixed seed, or average several passes; else sample only when "
                "self.training (use the mean in eval)",
            ))
        elif not _outputs_equal(out_a, out_b):
            culprit, where = _first_difference(calls_a, calls_b)
            ev["eval_random_module"] = culprit
            target = (f"'{culprit or 'model'}' ({type(modules[culprit]).__name__})" if culprit in modules
                      else "the model")
            if where == "module":
                phrase = f"{target} gives different outputs for the same input"
            elif where == "between":
                phrase = f"randomness in the code of {target}'s forward"
            elif where == "before":
                phrase = "the model's input already differs (randomness in recipe.forward)"
            else:
                phrase = "randomness in the forward pass"
            problems.append((
                "fail", f"eval-mode outputs differ between two identical calls: {phrase}",
                "something random stays on in eval mode: F.dropout(x, p) without training=self.training, "
                "torch.rand/randn noise in forward, or a module forced into train mode",
                "use nn.Dropout modules or pass training=self.training to functional dropout; add noise "
                "only when self.training",
            ))
        if dropout_inert:
            problems.append((
                "warn", f"dropout ({', '.join(dropouts[:3])}) has no effect in training",
                "two train-mode passes on the same batch gave identical outputs: the dropout output is "
                "unused, or p is effectively 0",
                "check that the dropout output feeds the next layer",
            ))

        status = "fail" if any(p[0] == "fail" for p in problems) else ("warn" if problems else "pass")
        if status == "pass":
            parts = []
            if ev["dropout"]:
                parts.append(f"dropout active in train, off in eval ({len(ev['dropout'])})")
            if bns:
                parts.append(f"batch-norm statistics update in training ({len(bns)})")
            parts.append("eval outputs deterministic")
            parts += notes
            return self.finding("pass", "; ".join(parts), evidence=ev)
        return self.finding(
            status, "; ".join(p[1] for p in problems), evidence=ev,
            cause=" ".join(p[2] for p in problems), fix=" ".join(p[3] for p in problems),
        )


def _first_difference(calls_a, calls_b) -> tuple[str, str]:
    """The first module call whose output differs between two passes, and whether its input did."""
    for (name, _, in_a, out_a), (_, _, in_b, out_b) in zip(calls_a, calls_b):
        if not _same(out_a, out_b):
            if _same(in_a, in_b):
                return name, "module"
            return (name.rpartition(".")[0], "between") if name else ("", "before")
    return "", "unknown"


_SAMPLING = {"randn", "randn_like", "rand", "rand_like", "normal", "bernoulli", "multinomial", "poisson", "randint",
             "randint_like", "normal_", "uniform_", "exponential_", "bernoulli_", "geometric_", "log_normal_",
             "cauchy_", "random_"}
_DROPOUT = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"}


def _intended_randomness(ctx, model: nn.Module, batch: Any) -> list[tuple[str, str]]:
    """Random draws the user's forward makes on purpose in eval mode: explicit sampling calls
    (torch.randn_like, torch.bernoulli, a distribution's rsample), or dropout written with
    training=True (MC dropout). [(op, "file:line in func")]; empty when the randomness comes
    from anything else (F.dropout left at its default, a module forced into train mode)."""
    import linecache

    from danlu.tracing import OpTracer, op_name, user_line

    calls: list[tuple[str, str, bool]] = []

    def on_op(func, args, kwargs, result) -> None:
        name = op_name(func)
        if name in _SAMPLING:
            where = user_line()
            if where:
                calls.append((f"torch.{name}", where, True))
        elif name in _DROPOUT and kwargs.get("training", len(args) < 3 or bool(args[2])):
            where = user_line()
            if where:
                file, _, rest = where.partition(":")
                code = linecache.getline(file, int(rest.split(" ")[0])) if rest.split(" ")[0].isdigit() else ""
                calls.append((f"F.{name}", where, "training=True" in code.replace(" ", "")))

    with torch.no_grad(), OpTracer(on_op):
        ctx.forward(model, batch)
    if any(not explicit for _, _, explicit in calls):
        return []      # dropout left at training=True by default: the classic bug, not a design
    return [(op, where) for op, where, _ in calls]
