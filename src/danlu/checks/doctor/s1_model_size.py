"""S1: parameter count and a compact model summary; start under 1M parameters."""

from __future__ import annotations

from collections import Counter
from typing import Any

from danlu.checks.base import Check, register
from danlu.checks.doctor.measure import unregistered_modules
from danlu.report import Finding

__all__ = ["ModelSize", "human"]


def human(n: float) -> str:
    """12874 -> '12.9k', 3.2e6 -> '3.2M'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


@register
class ModelSize(Check):
    """Model size: parameter count and a compact summary; start under 1M parameters.

    Detects: a first model that is larger than needed to get the pipeline working, a model
    with no trainable parameters, and the layers that hold most of the parameters.
    Why: practice S1, start small. A small model trains in seconds, so the sanity checks
    and the first experiments turn around quickly; scale up once the pipeline is proven
    (H3, H6). model() crashing is also reported here, with the line in your code.
    How: builds the model with recipe.model() under the recipe's seed and counts trainable
    and frozen parameters (shared parameters once), per top-level child and per layer type.
    Thresholds: warn above S1.max_params (1,000,000) trainable parameters; fail with none.
    Raise S1.max_params (e.g. `--set S1.max_params=2e7` or a recipe's `check_settings`)
    once the small model works.
    Fix: start with fewer channels, fewer layers or a smaller hidden size; grow the model
    only after S2/S3 (overfitting tiny data) pass and the validation curve asks for it.
    Cannot see: whether the architecture suits the task or is too small for it (S2/S3
    and the curves say that); compute cost, which is not the parameter count (S12 times
    it); parameters of lazy modules (nn.LazyLinear) before their first forward.
    """

    id = "S1"
    name = "model size"
    stage = "model"
    settings = ("max_params",)
    max_params = 1_000_000
    gates = True      # with no parameters, every check that trains crashes in the optimizer

    def run(self, ctx) -> Finding:
        model = ctx.prototype
        params = dict(model.named_parameters())
        trainable = sum(p.numel() for p in params.values() if p.requires_grad)
        frozen = sum(p.numel() for p in params.values() if not p.requires_grad)
        megabytes = sum(p.numel() * p.element_size() for p in params.values()) / 2**20
        by_type: Counter[str] = Counter()
        for module in model.modules():
            own = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
            if own:
                by_type[type(module).__name__] += own
        children = [
            [name, type(child).__name__, sum(p.numel() for p in child.parameters() if p.requires_grad)]
            for name, child in model.named_children()
        ] or [[type(model).__name__, type(model).__name__, trainable]]
        evidence: dict[str, Any] = {
            "trainable": trainable,
            "frozen": frozen,
            "megabytes": round(megabytes, 3),
            "by_type": dict(by_type.most_common()),
            "children": children,
        }
        details = "\n".join(f"{name:<24} {kind:<20} {count:>12,}" for name, kind, count in children)
        kinds = ", ".join(f"{k} {human(v)}" for k, v in by_type.most_common(4))
        summary = (f"{trainable:,} trainable parameters ({human(frozen)} frozen, {megabytes:.3g} MB)"
                   + (f": {kinds}" if kinds else ""))
        if trainable == 0:
            hidden = unregistered_modules(model)
            where = (f": its layers sit in a plain {hidden[0][0].split('[')[0]} container ({len(hidden)} of them, "
                     f"e.g. {hidden[0][0]} {hidden[0][1]})" if hidden else "")
            evidence["unregistered"] = [f"{w} ({k})" for w, k in hidden[:10]]
            return self.finding(
                "fail", "the model has no trainable parameters" + where, evidence=evidence, details=details,
                cause="every parameter has requires_grad=False, or the model registers none (modules "
                      "kept in a plain list/dict are not registered, so their weights are not parameters)",
                fix="hold layers in nn.ModuleList / nn.ModuleDict (tensors in nn.ParameterList), and unfreeze "
                    "at least the layers you mean to train",
            )
        if trainable > self.max_params:
            return self.finding(
                "warn", f"{summary}; above {human(self.max_params)}", evidence=evidence, details=details,
                cause="a large first model makes every experiment slow and hides pipeline bugs behind capacity",
                fix=f"start under {human(self.max_params)} parameters (fewer/narrower layers) and scale up once "
                    "S2/S3 pass; or raise the limit: --set S1.max_params=N",
            )
        return self.finding("pass", summary, evidence=evidence, details=details)
