"""S8: gradients reach every trainable parameter; no vanishing, exploding or dead units; parameters change."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn

from danlu.checks.base import Check, register
from danlu.checks.doctor.measure import unregistered_modules
from danlu.report import Finding
from danlu.tracing import ModuleStack, OpTracer, op_name

__all__ = ["Gradients"]

_ACTIVATIONS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_"}


class _Activations:
    """Per activation call: the fraction of dead units (ReLU) or saturated values (sigmoid, tanh)."""

    def __init__(self, model: nn.Module) -> None:
        self.stack = ModuleStack(model)
        self.stats: dict[str, dict[str, float]] = {}
        self._counts: dict[str, int] = defaultdict(int)
        self.mode = OpTracer(self._on_op)

    def _on_op(self, func, args, kwargs, result) -> None:
        name = op_name(func)
        if name not in _ACTIVATIONS or not isinstance(result, torch.Tensor) or result.dim() < 2:
            return
        module = self.stack.current
        label = f"{module or 'model'}.{name.rstrip('_')}" if module is not None else f"(loss).{name}"
        self._counts[label] += 1
        if self._counts[label] > 1:
            label = f"{label}#{self._counts[label]}"
        y = result.detach()
        units = y.transpose(0, 1).reshape(y.shape[1], -1)
        if name.startswith("relu"):
            if units.shape[0] < 4:
                return
            dead = float((units.max(dim=1).values <= 0).float().mean())
            self.stats[label] = {"dead": dead, "units": units.shape[0]}
        elif name.startswith("sigmoid"):
            self.stats[label] = {"saturated": float(((y < 0.01) | (y > 0.99)).float().mean())}
        else:
            self.stats[label] = {"saturated": float((y.abs() > 0.99).float().mean())}

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)
        self.stack.remove()


def _call_order(model: nn.Module, run) -> dict[str, int]:
    """Module path -> index of its first call during ``run()``."""
    order: dict[str, int] = {}

    def note(name: str):
        def hook(module, args) -> None:  # a pre-hook must return None, or it replaces the input
            order.setdefault(name, len(order))
        return hook

    handles = [m.register_forward_pre_hook(note(name)) for name, m in model.named_modules()]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return order


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().double().pow(2).mean().sqrt()) if t.numel() else 0.0


@register
class Gradients(Check):
    """Gradients: every trainable parameter gets a finite, non-zero gradient and changes after a step.

    Detects: layers kept in a plain list or dict (not nn.ModuleList / ModuleDict), which
    model.parameters() does not see; parameters that receive no gradient (unused layers, a
    .detach() or .item() in the path, torch.no_grad in forward), gradients that are zero or non-finite,
    trainable parameters missing from the optimizer, parameters that do not change after a
    step, vanishing or exploding gradient flow across layers, dead ReLU units and
    saturated sigmoid/tanh activations, and update/weight ratios far from about 1e-3.
    Frozen parameters are listed.
    Why: practice S8. A layer without gradient or outside the optimizer never learns, and
    nothing crashes; vanishing or exploding gradients and dead units make training stall
    or diverge; the update/weight ratio says whether the learning rate is in the right
    range (Karpathy's ~1e-3 rule of thumb).
    How: takes two training steps on one batch with the recipe's training step. Gradients are
    read after each backward (a parameter counts as unused or zero only if it is so in
    both steps, so a zero-initialised last layer is not a false alarm). Per weight tensor
    (2+ dims) it computes the gradient RMS in call order and ||update|| / ||weight|| of the
    first step; activation outputs are traced (nn.ReLU and F.relu alike) on the first pass.
    Weights that start at zero (a class token) have no gradient/weight ratio. Modules found
    in list, tuple or dict attributes but not among model.modules() are named.
    Thresholds: unregistered layers, no gradient, non-finite gradients and parameters
    missing from the optimizer fail; zero gradients, unchanged parameters, a ratio below
    S8.vanish_ratio (1e-4) between the median gradient RMS of the first and the last third of the
    weight tensors in call order (the trend with depth: one small tensor, such as attention's
    query/key weights at initialisation, is not vanishing), any ||grad||/||weight|| above S8.explode_ratio (100), a median
    update/weight ratio outside S8.update_low..S8.update_high (1e-6..0.5), over
    S8.dead_fraction (0.5) of a ReLU's units dead, or over S8.saturated_fraction (0.5) of a
    sigmoid/tanh saturated warn. Budget: S8.samples (64).
    Fix: use the layers you define (or delete them); remove .detach()/.item()/.data from the
    forward path; build the optimizer from model.parameters(); for vanishing gradients use
    ReLU-family activations, normalisation and residual connections; for exploding ones
    normalise inputs, lower the init scale or clip gradients.
    Cannot see: gradients that are healthy at the start and degrade later (the curve
    reader and the watcher see those); parameters used only on paths this batch does not
    take; modules kept in containers other than list, tuple or dict attributes.
    """

    id = "S8"
    name = "gradients"
    stage = "step"
    settings = ("vanish_ratio", "explode_ratio", "update_low", "update_high", "dead_fraction",
                "saturated_fraction", "samples")
    vanish_ratio = 1e-4
    explode_ratio = 100.0
    update_low = 1e-6
    update_high = 0.5
    dead_fraction = 0.5
    saturated_fraction = 0.5
    samples = 64

    def run(self, ctx) -> Finding:
        model = ctx.new_model().train()
        train_step = ctx.train_step(model)
        optimizer = train_step.optimizer
        named = dict(model.named_parameters())
        trainable = {n: p for n, p in named.items() if p.requires_grad}
        frozen = [n for n, p in named.items() if not p.requires_grad]
        in_opt = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [n for n, p in trainable.items() if id(p) not in in_opt]
        owner = {}
        for mname, module in model.named_modules():
            for pname, _ in module.named_parameters(recurse=False):
                owner.setdefault(f"{mname}.{pname}" if mname else pname, mname)
        batch = ctx.batch(max(2, min(ctx.batch_size, self.samples)), seed=8)

        def step(trace: bool):
            acts = None
            if trace:
                acts = _Activations(model)
                with acts:
                    out = train_step.forward_backward(batch)
            else:
                out = train_step.forward_backward(batch)
            grads = {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in trainable.items()}
            return grads, acts, float(out.loss)

        order: dict[str, int] = {}
        holder: dict[str, Any] = {}

        def first():
            holder["out"] = step(trace=True)

        order = _call_order(model, first)
        grads1, acts, loss1 = holder["out"]
        before = {n: p.detach().clone() for n, p in trainable.items()}
        train_step.update()
        updates = {n: _rms(p.detach() - before[n]) / _rms(before[n])  # zero-initialised weights have no ratio
                   for n, p in trainable.items() if p.dim() >= 2 and grads1[n] is not None and _rms(before[n]) > 0}
        changed = {n: not torch.equal(p.detach(), before[n]) for n, p in trainable.items()}
        grads2, _, loss2 = step(trace=False)

        ev: dict[str, Any] = {"trainable_tensors": len(trainable), "frozen": frozen[:20], "loss": [loss1, loss2]}
        problems: list[tuple[str, str, str, str]] = []
        hidden = unregistered_modules(model)
        if hidden:
            ev["unregistered"] = [f"{where} ({kind})" for where, kind in hidden[:10]]
            where, kind = hidden[0]
            problems.append((
                "fail", f"{len(hidden)} layer(s) kept in a plain Python container are invisible to "
                        f"model.parameters(): {where} ({kind})" + (f" and {len(hidden) - 1} more" if len(hidden) > 1 else ""),
                "a list or dict attribute does not register its modules: the optimizer never sees their "
                "weights, .to(device) and state_dict() skip them, so they never train and are not saved",
                "hold layers in nn.ModuleList / nn.ModuleDict (or nn.Sequential) instead of a list or dict",
            ))

        no_grad = [n for n in trainable if grads1[n] is None and grads2[n] is None]
        nonfinite = [n for n in trainable for g in (grads1[n], grads2[n])
                     if g is not None and not bool(torch.isfinite(g).all())]
        nonfinite = list(dict.fromkeys(nonfinite))
        zero = [n for n in trainable if n not in no_grad and n not in nonfinite
                and all(g is None or not bool(g.any()) for g in (grads1[n], grads2[n]))]
        in_optimizer_with_grad = [n for n in trainable if n not in missing and n not in no_grad and n not in zero
                                  and grads1[n] is not None and bool(grads1[n].any())]
        unchanged = [n for n in in_optimizer_with_grad if not changed[n]]
        if missing:
            ev["not_in_optimizer"] = missing
            problems.append((
                "fail", f"{len(missing)} trainable tensor(s) are not in the optimizer: {', '.join(missing[:4])}",
                "the optimizer was built from a subset of the parameters, so these never change",
                "build the optimizer from model.parameters() (or add the missing ones to a param group), "
                "or set requires_grad=False if they are meant to be frozen",
            ))
        if no_grad:
            ev["no_gradient"] = no_grad
            problems.append((
                "fail", f"{len(no_grad)} trainable tensor(s) get no gradient: {', '.join(no_grad[:4])}",
                "they are not used in the forward pass, or the path from them to the loss is cut "
                "(.detach(), .item(), .data, torch.no_grad, a numpy round-trip)",
                "use them in forward or delete them; remove the detaching call from the forward path",
            ))
        if nonfinite:
            ev["nonfinite_gradient"] = nonfinite
            problems.append(("fail", f"non-finite gradients in {', '.join(nonfinite[:4])}",
                             "NaN/Inf in the forward or backward pass", "see S9 for the module and operation"))
        if zero:
            ev["zero_gradient"] = zero
            problems.append((
                "warn", f"{len(zero)} tensor(s) get an all-zero gradient in two steps: {', '.join(zero[:4])}",
                "their output does not affect the loss: dead ReLUs, a multiplication by zero, or a masked branch",
                "check the layer's activations (dead units) and what uses its output",
            ))
        if unchanged and len(unchanged) == len(in_optimizer_with_grad):
            ev["unchanged"] = unchanged
            problems.append((
                "fail", "no parameter changed after an optimizer step",
                f"the learning rate is 0 or the step is skipped (lr {optimizer.param_groups[0].get('lr')})",
                "set a positive learning rate; check that optimizer.step() updates model.parameters()",
            ))
        elif unchanged:
            ev["unchanged"] = unchanged
            problems.append((
                "warn", f"{len(unchanged)} tensor(s) did not change after a step: {', '.join(unchanged[:4])}",
                "their gradient is too small to move float32 weights, or their param group has lr 0",
                "check the param groups' learning rates; see the gradient flow below",
            ))

        # --- gradient flow across layers -------------------------------------------------
        layers = []
        for n, p in trainable.items():
            if p.dim() < 2 or n in no_grad or n in nonfinite:
                continue
            rms = max(_rms(g) for g in (grads1[n], grads2[n]) if g is not None)
            # ||grad|| / ||weight|| against the initial weights; a weight that starts at zero (a ViT's class
            # token, a zero-initialised last layer) has no ratio: dividing by ~0 is not evidence.
            norm0 = float(before[n].norm())
            rel = (max(float(g.norm()) for g in (grads1[n], grads2[n]) if g is not None) / norm0
                   if _rms(before[n]) > 1e-8 else None)
            layers.append((order.get(owner.get(n, ""), 10**6), n, rms, rel, updates.get(n)))
        layers.sort()
        ev["layers"] = [{"name": n, "grad_rms": rms, "grad_rel": rel, "update_ratio": up}
                        for _, n, rms, rel, up in layers]
        flow_text = ""
        if len(layers) >= 2:
            positive = [(i, layer) for i, layer in enumerate(layers) if layer[2] > 0]
            if len(positive) >= 2:
                i_min, lo = min(positive, key=lambda t: t[1][2])
                i_max, hi = max(positive, key=lambda t: t[1][2])
                flow_text = f"grad RMS {lo[2]:.2g} ({lo[1]}) .. {hi[2]:.2g} ({hi[1]})"
                # the trend with depth, not one tensor: attention's query/key weights get tiny gradients
                # at initialisation in every healthy transformer; vanishing is the early layers as a group
                third = max(1, len(positive) // 3)
                early = _median([layer[2] for _, layer in positive[:third]])
                late = _median([layer[2] for _, layer in positive[-third:]])
                spread = min(early, late) / max(early, late)
                i_min, i_max = (0, 1) if early < late else (1, 0)
                ev["grad_rms_spread"] = spread
                ev["grad_rms_first_third"], ev["grad_rms_last_third"] = early, late
                if spread < self.vanish_ratio:
                    if i_min < i_max:
                        problems.append((
                            "warn", f"vanishing gradients: median grad RMS {early:.2g} in the first third of the "
                                    f"layers vs {late:.2g} in the last ({flow_text})",
                            "the gradient shrinks layer by layer toward the input (saturating sigmoid/tanh, "
                            "deep stacks without normalisation or residual connections)",
                            "use ReLU-family activations, batch/layer normalisation or residual connections; "
                            "initialise with kaiming/xavier for the activation",
                        ))
                    else:
                        problems.append((
                            "warn", f"exploding gradients toward the input: median grad RMS {early:.2g} in the "
                                    f"first third of the layers vs {late:.2g} in the last ({flow_text})",
                            "the gradient grows layer by layer toward the input (weights initialised too large)",
                            "use the default (kaiming) initialisation or a smaller init scale; clip gradients",
                        ))
        big = [(n, rel) for _, n, _, rel, _ in layers if rel is not None and rel > self.explode_ratio]
        if big:
            ev["exploding"] = big[:5]
            problems.append((
                "warn", f"exploding gradients: ||grad||/||weight|| = {big[0][1]:.3g} in {big[0][0]}",
                "gradients dwarf the weights: huge activations or loss (unnormalised inputs or targets, "
                "too-large init)",
                "normalise inputs (D4) and targets; check the initial loss (S4); clip gradients (grad_clip)",
            ))

        ratios = sorted(up for *_, up in layers if up is not None and up > 0)
        if ratios:
            median = ratios[len(ratios) // 2]
            ev["update_ratio_median"] = median
            if median > self.update_high:
                problems.append((
                    "warn", f"update/weight ratio {median:.2g} per step (median over layers) is very large",
                    "the learning rate is too high: one step rewrites a large part of each weight",
                    "lower the learning rate (T4: try /10)",
                ))
            elif median < self.update_low:
                problems.append((
                    "warn", f"update/weight ratio {median:.2g} per step (median over layers) is tiny",
                    "the learning rate is too low (or the gradients vanish): weights barely move",
                    "raise the learning rate (T4: try x10)",
                ))

        # --- activations ----------------------------------------------------------------
        if acts is not None and acts.stats:
            ev["activations"] = acts.stats
            dead = [(k, v["dead"]) for k, v in acts.stats.items() if v.get("dead", 0) > self.dead_fraction]
            sat = [(k, v["saturated"]) for k, v in acts.stats.items()
                   if v.get("saturated", 0) > self.saturated_fraction]
            if dead:
                problems.append((
                    "warn", f"dead ReLU units: {dead[0][1]:.0%} of {dead[0][0]} never activate on the batch",
                    "pre-activations are negative for every sample: large negative biases, unnormalised "
                    "inputs, or a learning rate that pushed them there",
                    "normalise inputs (D4), use kaiming init, or LeakyReLU/GELU",
                ))
            if sat:
                problems.append((
                    "warn", f"saturated activations: {sat[0][1]:.0%} of {sat[0][0]} outputs are at their limits",
                    "pre-activations are large, so sigmoid/tanh gradients vanish",
                    "normalise inputs (D4) and initialise with xavier for tanh/sigmoid, or use ReLU-family",
                ))

        status = "fail" if any(p[0] == "fail" for p in problems) else ("warn" if problems else "pass")
        if status != "pass":
            return self.finding(status, "; ".join(p[1] for p in problems), evidence=ev,
                                cause=" ".join(p[2] for p in problems), fix=" ".join(p[3] for p in problems))
        parts = [f"{len(trainable)} tensors get finite gradients and change after a step"]
        if frozen:
            parts[0] += f" ({len(frozen)} frozen: {', '.join(frozen[:3])})"
        if flow_text:
            parts.append(flow_text)
        if ratios:
            parts.append(f"update/weight median {ev['update_ratio_median']:.2g}")
        if acts is not None:
            worst = max((v.get("dead", 0) for v in acts.stats.values()), default=None)
            if worst is not None:
                parts.append(f"dead ReLU units <= {worst:.0%}")
        return self.finding("pass", "; ".join(parts), evidence=ev)
