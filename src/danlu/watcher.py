"""``danlu.watch``: the S9 NaN/Inf guard and per-layer gradient norms for users' own training loops.

    run = danlu.init(config={"lr": 1e-3})
    watcher = danlu.watch(model, optimizer, run=run, every=50)
    for x, y in loader:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()

Design (what it costs while nothing goes wrong, and why it can still localise):

- A user loop cannot be replayed from the outside (danlu does not own the loss code),
  so each training-mode call of the model keeps *references* (no copies) to its
  arguments and the CPU RNG state: one forward pre-hook, a few microseconds.
- Once per step, before the optimizer applies the gradients (an optimizer step
  pre-hook; without an optimizer, a multi-grad hook that fires once per backward), the
  gradient norms of all parameters are computed in one fused call
  (``torch._foreach_norm``) and checked for NaN/Inf with one host sync. Every ``every``
  steps the same norms are logged to the run as ``grad_norm/<parameter>`` and
  ``grad_norm/total``. Nothing else runs in the hot loop.
- Only when a gradient is non-finite does the expensive part run: the model, still
  holding the weights that produced the NaN (the step has not happened yet), replays
  the forward call with the saved arguments and RNG state under the S9 tracer (module
  hooks + TorchFunctionMode), then a backward pass from a random finite gradient at its
  output. That names the phase (data, forward, backward), the module, the operation, the
  line in the user's code and the batch rows, as ``danlu check`` does. When the model's
  forward and backward are both finite, the NaN came from the loss code: phase "loss".
  Gradients, buffers and the RNG state are restored afterwards.
- ``torch.autograd.detect_anomaly`` instead records a traceback for every operation
  of every step (about 1.5-1.8x the step time of a small CNN; see
  benchmarks/watch_overhead.py).

Limits: the guard watches gradients, so a NaN loss whose gradients stay finite (rare:
e.g. log of a negative number, whose derivative 1/x is finite) is not seen (log the
loss with ``run.log``: the live diagnosis flags it); dropout masks drawn on a CUDA
generator are not replayed (the CPU RNG is); on GPU the per-step check is one host
sync (as ``loss.item()`` is); the first NaN is localised, later ones are counted.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from danlu.batches import leaves
from danlu.report import Finding, Report
from danlu.tracing import Origin, trace_nonfinite

__all__ = ["watch", "Watcher", "NonFiniteError"]


class NonFiniteError(FloatingPointError):
    """Raised by a watcher with ``on_nonfinite="raise"``; ``.finding`` says where the NaN came from."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(f"{finding.summary}. Fix: {finding.fix}")
        self.finding = finding


def _current_run():
    """The single live danlu run of this process, if exactly one is open."""
    from danlu.track import current_run

    return current_run()


class Watcher:
    """Hooks installed by :func:`watch`. ``remove()`` uninstalls them; also a context manager."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        run: Any = None,
        every: int = 50,
        on_nonfinite: Literal["warn", "raise", "ignore"] = "warn",
    ) -> None:
        if on_nonfinite not in ("warn", "raise", "ignore"):
            raise ValueError("on_nonfinite must be 'warn', 'raise' or 'ignore'")
        self.model = model
        self.optimizer = optimizer
        self.run = run if run is not None else _current_run()
        self.every = max(1, int(every))
        self.on_nonfinite = on_nonfinite
        self.step = 0
        self.events: list[Finding] = []
        self.nonfinite_steps: list[int] = []
        self.history: list[tuple[int, dict[str, float]]] = []
        self._params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self._args: tuple = ()
        self._seen_forward = False
        self._kwargs: dict = {}
        self._rng: torch.Tensor | None = None
        self._handles: list = []
        self._install()

    def _install(self) -> None:
        model, optimizer = self.model, self.optimizer
        self._handles = [model.register_forward_pre_hook(self._before_forward, with_kwargs=True)]
        if optimizer is not None:
            self._handles.append(optimizer.register_step_pre_hook(self._before_step))
        elif self._params:
            self._handles.append(torch.autograd.graph.register_multi_grad_hook(
                [p for _, p in self._params], self._after_backward, mode="all"))

    def _uninstall(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # ------------------------------------------------------------ cheap per-step hooks
    def _before_forward(self, module, args, kwargs):
        if module.training and torch.is_grad_enabled():
            self._seen_forward = True
            self._args, self._kwargs = args, kwargs
            self._rng = torch.get_rng_state()
        return None

    def _before_step(self, optimizer, args, kwargs) -> None:
        names, grads = [], []
        for name, p in self._params:
            if p.grad is not None:
                names.append(name)
                grads.append(p.grad)
        self._check(names, grads)

    def _after_backward(self, grads) -> None:
        names = [name for (name, _), g in zip(self._params, grads) if g is not None]
        self._check(names, [g for g in grads if g is not None])

    def _check(self, names: list[str], grads: list[torch.Tensor]) -> None:
        self.step += 1
        if not grads:
            return
        norms = torch.stack(torch._foreach_norm(grads))
        finite = bool(torch.isfinite(norms).all())
        if not finite:
            self._nonfinite(names, norms)
        if self.step % self.every == 0:
            self._log_norms(names, norms)

    # ------------------------------------------------------------ logging
    def _log_norms(self, names: list[str], norms: torch.Tensor) -> None:
        values = norms.double().tolist()
        total = float(norms.double().pow(2).sum().sqrt())
        record = {f"grad_norm/{n}": v for n, v in zip(names, values)}
        record["grad_norm/total"] = total
        if self.run is not None:
            self.run.log(record, step=self.step)
        else:
            self.history.append((self.step, record))

    # ------------------------------------------------------------ the rare path
    def _nonfinite(self, names: list[str], norms: torch.Tensor) -> None:
        self.nonfinite_steps.append(self.step)
        if self.events:  # the first NaN is localised; later ones are only counted
            return
        bad = [n for n, v in zip(names, norms.tolist()) if not torch.isfinite(torch.tensor(v))]
        origin = self.localise()
        from danlu.checks.doctor.s9_nonfinite import NonFinite, nonfinite_finding

        what = f"gradients of {', '.join(bad[:3])}{'...' if len(bad) > 3 else ''} are non-finite"
        finding = nonfinite_finding(NonFinite(), origin, self.step, what, {"bad_params": bad[:20]})
        finding.evidence["source"] = "danlu.watch"
        self.events.append(finding)
        if self.run is not None:
            try:
                self.run.log({"watch/nonfinite": 1.0}, step=self.step)
                self.run.save_report(Report(kind="check", title="watch: NaN/Inf", findings=[finding],
                                            meta={"step": self.step, "source": "danlu.watch"}))
            except Exception:  # pragma: no cover - a store problem must not break the user's loop
                pass
        if self.on_nonfinite == "warn":
            from danlu.console import err_console, escape

            err_console.print(f"[bold red]danlu.watch:[/] {escape(finding.summary)}")
            if finding.fix:
                err_console.print(f"  [dim]fix:[/] {escape(finding.fix)}")
        elif self.on_nonfinite == "raise":
            raise NonFiniteError(finding)

    def localise(self) -> Origin:
        """Replay the last training forward, and a backward pass, under the tracer.

        The replay runs on the model itself, whose weights are still those of the bad step
        (the optimizer has not stepped yet); gradients, buffers (batch-norm statistics) and
        the RNG state are restored afterwards, and this watcher's hooks are detached meanwhile.
        The loss code is the user's and cannot be replayed, so the backward pass starts from a
        random finite gradient at the model's output: a NaN made inside the model's backward
        (sqrt at 0, ...) appears with any such gradient. When the forward and that backward are
        both finite, the non-finite gradient came from the loss code: phase "loss".
        """
        model = self.model
        if not self._seen_forward:  # the training step never called model(...) (a LightningModule calling
            return Origin(phase="not reproduced")  # its layers itself): there is no forward to replay
        batch = next((leaf.shape[0] for leaf in leaves(self._args)
                      if isinstance(leaf, torch.Tensor) and leaf.dim()), None)
        grads = [(p, p.grad) for p in model.parameters()]
        buffers = [(b, b.detach().clone()) for b in model.buffers()]
        saved_rng = torch.get_rng_state()
        installed = bool(self._handles)
        self._uninstall()
        for p, _ in grads:
            p.grad = None
        if self._rng is not None:
            torch.set_rng_state(self._rng)

        def forward():
            return model(*self._args, **self._kwargs)

        def backward(output):
            outs = [o for o in leaves(output) if isinstance(o, torch.Tensor) and o.requires_grad]
            gen = torch.Generator(device=outs[0].device).manual_seed(0) if outs else None
            seeds = [torch.randn(o.shape, generator=gen, device=o.device, dtype=o.dtype) for o in outs]
            if outs:  # gradients to find where a NaN enters the backward pass, on a replay: no training
                torch.autograd.backward(outs, grad_tensors=seeds)

        try:
            origin = trace_nonfinite(model, forward, backward, batch, inputs=(self._args, self._kwargs))
        finally:
            for p, g in grads:
                p.grad = g
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
            torch.set_rng_state(saved_rng)
            if installed:
                self._install()
        if origin.phase == "not reproduced":
            return Origin(phase="loss", op="(your loss code)")
        return origin

    # ------------------------------------------------------------ lifetime
    def remove(self) -> None:
        self._uninstall()
        self._args, self._kwargs = (), {}

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    run: Any = None,
    every: int = 50,
    on_nonfinite: Literal["warn", "raise", "ignore"] = "warn",
) -> Watcher:
    """Guard a user's training loop: localise the first NaN/Inf (S9) and log gradient norms (S8).

    ``run`` is a ``danlu.init`` run (default: the one live run of this process, if any);
    gradient norms go to it as ``grad_norm/<parameter>`` and ``grad_norm/total`` every
    ``every`` optimizer steps, and a NaN/Inf is saved as a "check" report. Without a run
    they are kept in ``watcher.history`` and ``watcher.events``. ``on_nonfinite``:
    "warn" (print and continue), "raise" (NonFiniteError) or "ignore" (record only).
    Pass the optimizer for the cheapest guard (one check per step, before the update).
    """
    return Watcher(model, optimizer, run=run, every=every, on_nonfinite=on_nonfinite)
