"""Watch torch operations during a forward/backward pass, attributed to modules and user lines.

Two pieces, used by S8 (activation statistics), S9 (where a NaN/Inf comes from) and
``danlu.watch`` (the same localisation in a user's loop):

- :class:`ModuleStack`: forward pre/post hooks that keep the path of the module running
  now (``"features.3"``), and whether the model's top-level call has finished (ops
  after it belong to the loss).
- :class:`OpTracer`: a ``TorchFunctionMode`` that sees every torch function and tensor
  method called (F.linear, torch.log, x / y, ...), with its result. It is used only for
  one replayed step, never in the hot loop: it costs tens of microseconds per op.

:func:`trace_nonfinite` combines them: run a step under the tracer, and report the first
operation whose result is non-finite although its inputs are finite (forward), or the
first autograd node whose incoming gradient is finite but whose outgoing one is not
(backward), with the module, the line in the user's code and the batch rows involved.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from danlu.batches import leaves
from danlu.errors import is_user_file

__all__ = ["ModuleStack", "OpTracer", "Origin", "trace_nonfinite", "user_line"]

_USER_FILE_CACHE: dict[str, bool] = {}


def user_line() -> str:
    """'file:line in func' of the innermost frame on the stack that is in the user's files."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        user = _USER_FILE_CACHE.get(name)
        if user is None:
            user = _USER_FILE_CACHE[name] = is_user_file(name)
        if user:
            return f"{name}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back
    return ""


class ModuleStack:
    """The path of the module currently running inside ``model`` ("" is the model itself)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.stack: list[str] = []
        self.root_calls = 0          # top-level calls finished so far
        self.types = {name: type(m).__name__ for name, m in model.named_modules()}
        self.handles = []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._enter(name)))
            self.handles.append(module.register_forward_hook(self._leave(name)))

    def _enter(self, name: str):
        def hook(module, args):
            self.stack.append(name)
        return hook

    def _leave(self, name: str):
        def hook(module, args, output):
            if self.stack and self.stack[-1] == name:
                self.stack.pop()
            if name == "":
                self.root_calls += 1
        return hook

    @property
    def current(self) -> str | None:
        """Innermost running module's path, or None outside the model."""
        return self.stack[-1] if self.stack else None

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


class OpTracer(TorchFunctionMode):
    """Calls ``on_op(func, args, kwargs, result)`` after every torch function while active."""

    def __init__(self, on_op: Callable[[Any, tuple, dict, Any], None]) -> None:
        super().__init__()
        self.on_op = on_op

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        self.on_op(func, args, kwargs, result)
        return result


def op_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or str(func)
    qual = getattr(func, "__qualname__", "") or ""
    if name.startswith("__get__") or qual.endswith(".__get__"):
        return qual.split(".")[0]
    return name.strip("_") if name.startswith("__") else name


def _finite(value: Any) -> bool:
    for leaf in leaves(value):
        if isinstance(leaf, torch.Tensor) and (leaf.is_floating_point() or leaf.is_complex()):
            if leaf.numel() and not bool(torch.isfinite(leaf).all()):
                return False
    return True


def _bad_rows(tensor: torch.Tensor, batch_size: int | None) -> list[int]:
    if batch_size is None or tensor.dim() == 0 or tensor.shape[0] != batch_size:
        return []
    bad = ~torch.isfinite(tensor.detach().reshape(batch_size, -1)).all(dim=1)
    return bad.nonzero().flatten().tolist()


@dataclass
class Origin:
    """Where a non-finite value first appeared."""

    phase: str                      # "data", "forward", "loss", "backward", "not reproduced"
    op: str = ""                    # torch operation (forward) or autograd node (backward)
    module: str | None = None       # module path; "" is the model itself; None outside the model
    module_type: str = ""
    where: str = ""                 # file:line in the user's code
    samples: list[int] = field(default_factory=list)
    value: str = ""                 # "nan", "inf", "nan and inf"

    def describe(self) -> str:
        if self.phase == "not reproduced":
            return "could not reproduce the non-finite value when replaying the step"
        if self.phase == "data":
            return f"the input batch itself holds {self.value or 'NaN/Inf'} (samples {self.samples[:8]})"
        parts = [f"{self.phase} pass"]
        if self.module is not None:
            label = self.module or "model"
            parts.append(f"module '{label}' ({self.module_type})")
        elif self.phase == "loss":
            parts.append("the loss computation")
        if self.op:
            parts.append(f"operation {self.op}")
        text = ", ".join(parts)
        if self.where:
            text += f" at {self.where}"
        if self.samples:
            text += f"; batch rows {self.samples[:8]}"
        return text


def _kind(t: torch.Tensor) -> str:
    nan, inf = bool(torch.isnan(t).any()), bool(torch.isinf(t).any())
    return "nan and inf" if nan and inf else ("nan" if nan else "inf")


@dataclass
class _Record:
    op: str
    module: str | None
    phase: str
    where: str


class _NonFiniteTracer:
    """Records, during one traced pass, the first non-finite op and each autograd node's origin."""

    def __init__(self, model: nn.Module, batch_size: int | None) -> None:
        self.stack = ModuleStack(model)
        self.batch_size = batch_size
        self.nodes: dict[Any, _Record] = {}
        self.forward_origin: Origin | None = None
        self.backward_origin: Origin | None = None
        self.node_handles: list = []
        self._seen: set = set()
        self.mode = OpTracer(self._on_op)

    def _phase(self) -> tuple[str, str | None]:
        module = self.stack.current
        if module is not None:
            return "forward", module
        return ("loss" if self.stack.root_calls else "forward"), None

    def _on_op(self, func, args, kwargs, result) -> None:
        outs = [r for r in leaves(result) if isinstance(r, torch.Tensor)]
        if not outs:
            return
        phase, module = self._phase()
        record = None
        for out in outs:
            if out.grad_fn is not None and out.grad_fn not in self.nodes:
                record = record or _Record(op_name(func), module, phase, user_line())
                self.nodes[out.grad_fn] = record
        if self.forward_origin is None and not _finite(outs):
            if _finite((args, kwargs)):
                bad = next(o for o in outs if not _finite(o))
                self.forward_origin = Origin(
                    phase=phase, op=op_name(func), module=module,
                    module_type=self.stack.types.get(module, "") if module is not None else "",
                    where=record.where if record else user_line(), samples=_bad_rows(bad, self.batch_size),
                    value=_kind(bad),
                )

    def arm_backward(self, root: torch.Tensor) -> None:
        """Hook every autograd node reachable from ``root`` (attributing internal nodes to their op)."""
        if root.grad_fn is None:
            return
        seen = self._seen
        todo = [(root.grad_fn, None)]
        while todo:
            node, owner = todo.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            record = self.nodes.get(node, owner)
            if "AccumulateGrad" not in node.name():
                self.node_handles.append(node.register_hook(self._node_hook(node, record)))
            for child, _ in node.next_functions:
                if child is not None and child not in seen:
                    todo.append((child, record if child not in self.nodes else None))

    def _node_hook(self, node, record: _Record | None):
        def hook(grad_inputs, grad_outputs):
            if self.backward_origin is not None:
                return
            if _finite(grad_outputs) and not _finite(grad_inputs):
                bad = next(g for g in grad_inputs if isinstance(g, torch.Tensor) and not _finite(g))
                module = record.module if record else None
                self.backward_origin = Origin(
                    phase="backward", op=node.name() + (f" (from {record.op})" if record else ""),
                    module=module, module_type=self.stack.types.get(module, "") if module is not None else "",
                    where=record.where if record else "", samples=_bad_rows(bad, self.batch_size),
                    value=_kind(bad),
                )
        return hook

    def __enter__(self) -> _NonFiniteTracer:
        self.mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.mode.__exit__(*exc)

    def remove(self) -> None:
        self.stack.remove()
        for h in self.node_handles:
            h.remove()
        self.node_handles = []


def trace_nonfinite(
    model: nn.Module,
    run_forward: Callable[[], Any],
    run_backward: Callable[[Any], None],
    batch_size: int | None = None,
    inputs: Any = None,
) -> Origin:
    """Replay one step under the tracer and say where the first non-finite value appeared.

    ``run_forward()`` does the forward pass (and the loss) and returns what to
    backpropagate from (a tensor or a nest of them); ``run_backward(root)`` runs the
    backward pass. ``inputs``, when
    given, is checked first: non-finite inputs make the phase "data".
    """
    if inputs is not None:
        for leaf in leaves(inputs):
            if isinstance(leaf, torch.Tensor) and (leaf.is_floating_point() or leaf.is_complex()) and not _finite(leaf):
                return Origin(phase="data", samples=_bad_rows(leaf, batch_size), value=_kind(leaf))
    tracer = _NonFiniteTracer(model, batch_size)
    try:
        with tracer:
            root = run_forward()
        if tracer.forward_origin is not None:
            return tracer.forward_origin
        roots = [r for r in leaves(root) if isinstance(r, torch.Tensor) and r.requires_grad]
        if roots:
            for r in roots:
                tracer.arm_backward(r)
            run_backward(root)
            if tracer.backward_origin is not None:
                return tracer.backward_origin
        return Origin(phase="not reproduced")
    finally:
        tracer.remove()
