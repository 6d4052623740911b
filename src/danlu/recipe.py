"""The recipe contract: a training set-up in plain PyTorch, with typed hyperparameters.

A recipe is a class. Its hyperparameters are annotated class attributes with defaults;
its methods say how to get the data and the model, and optionally the loss, optimizer,
metrics, forward pass, loaders and schedule. Everything else (seeding, logging,
checkpoints, checks) is danlu's job. Defaults follow practice T5 (AdamW, lr 3e-4,
batch 64, cosine schedule) and T4 (optional warmup, an LR floor).
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import sys
import typing
import weakref
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from danlu.errors import HyperparameterError, RecipeError, user_frame

__all__ = ["Recipe", "load_recipe", "load_recipe_class", "parse_overrides", "infer_task", "uses_default_loss", "recipe_spec",
           "recipe_source", "check_data", "check_model", "check_values"]

_TRUE = {"1", "true", "yes", "on"}
#: Recipe class -> its fields (Recipe.fields), kept as long as the class lives.
_FIELDS: weakref.WeakKeyDictionary[type, dict[str, Any]] = weakref.WeakKeyDictionary()
_FALSE = {"0", "false", "no", "off"}


class Recipe:
    """Base class of every recipe. Subclass it, add hyperparameters, implement data() and model().

    >>> class Tiny(Recipe):
    ...     hidden: int = 8
    ...     def data(self): ...
    ...     def model(self): ...
    >>> Tiny(lr=1e-3).hparams()["lr"]
    0.001
    """

    # --- inherited hyperparameters (T5 defaults, T4 schedule knobs, T1/T3 engine knobs) ---
    seed: int = 0
    lr: float = 3e-4
    batch_size: int = 64
    epochs: int = 10
    weight_decay: float = 0.0
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = 0          # linear warmup from lr/100 to lr (T4)
    min_lr: float = 1e-5           # cosine floor, capped at lr (T4)
    patience: int = 5              # epochs without val-loss improvement before stopping; 0 = never (T3)
    probe_every: int = 50          # steps between random validation-batch probes (T1)
    grad_clip: float = 0.0         # max global gradient norm; 0 = off
    num_workers: int = 0           # DataLoader worker processes
    precision: Literal["32", "bf16", "16"] = "32"   # autocast to bfloat16 / float16 (with a gradient scaler)
    accumulate: int = 1            # micro-batches per optimizer step (gradient accumulation)
    compile: bool = False          # torch.compile the model for training (falls back to eager if it fails)
    checkpoint_every: int = 0      # also checkpoint every N optimizer steps (0 = at epoch ends only)

    #: "classification" or "regression"; None infers it from the targets' dtype (set per instance then).
    task: ClassVar[str | None] = None
    #: Where the loss comes from, when ``forward`` returns ``(loss, None)`` because the model computes
    #: its own loss (a LightningModule's ``training_step``, a Hugging Face model given labels); None for
    #: an ordinary recipe. Checks that need the output and the target skip with this as the reason.
    loss_only: ClassVar[str | None] = None
    #: Whether a study worker may hand one trial's data() result to the next trials that would load
    #: the same (danlu.data_reuse); set False when data() reads files that change during a study.
    reuse_data: ClassVar[bool] = True

    def __init__(self, **overrides: Any) -> None:
        fields = type(self).fields()
        for name, value in overrides.items():
            if name not in fields:
                raise HyperparameterError(
                    f"{type(self).__name__} has no hyperparameter '{name}'. "
                    f"Valid fields: {', '.join(sorted(fields))}."
                )
            setattr(self, name, _check_type(type(self), name, fields[name], value))
        # Copy class defaults onto the instance so hparams() is a plain snapshot.
        for name in fields:
            if name not in overrides:
                setattr(self, name, getattr(type(self), name))
        check_values(self)

    # ------------------------------------------------------------------ fields
    @classmethod
    def fields(cls) -> dict[str, Any]:
        """Map of hyperparameter name -> declared type, base fields first (worked out once per class:
        resolving type hints is most of what a tiny trial's set-up costs)."""
        known = _FIELDS.get(cls)
        if known is None:
            known = _FIELDS[cls] = cls._find_fields()
        return dict(known)

    @classmethod
    def _find_fields(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        out: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for name in getattr(klass, "__annotations__", {}):
                hint = hints.get(name)
                if name.startswith("_") or typing.get_origin(hint) is ClassVar or hint is ClassVar:
                    continue
                if not hasattr(cls, name):
                    raise RecipeError(
                        f"{cls.__name__}.{name} is annotated but has no default. "
                        f"Give every hyperparameter a default, e.g. `{name}: int = 1`."
                    )
                out[name] = hint
        return out

    @classmethod
    def from_strings(cls, overrides: dict[str, str]) -> Recipe:
        """Build a recipe from command-line `key=value` strings, coerced to the declared types."""
        fields = cls.fields()
        values: dict[str, Any] = {}
        for name, text in overrides.items():
            if name not in fields:
                raise HyperparameterError(
                    f"{cls.__name__} has no hyperparameter '{name}'. "
                    f"Valid fields: {', '.join(sorted(fields))}."
                )
            values[name] = _coerce(cls, name, fields[name], text)
        return cls(**values)

    def hparams(self) -> dict[str, Any]:
        """All hyperparameters of this instance, as plain JSON-able values."""
        return {name: getattr(self, name) for name in type(self).fields()}

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.hparams().items() if v != getattr(type(self), k)}
        inner = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{type(self).__name__}({inner})"

    # --------------------------------------------------------- required methods
    def data(self) -> tuple[Dataset, Dataset]:
        """Return (train, val): map-style datasets whose items are (input, target)."""
        raise RecipeError(f"{type(self).__name__} must implement data() -> (train, val).")

    def model(self) -> nn.Module:
        """Return a freshly initialised nn.Module."""
        raise RecipeError(f"{type(self).__name__} must implement model() -> nn.Module.")

    # --------------------------------------------------------- optional methods
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy for classification, MSE for regression (mean over the batch)."""
        if self.task == "regression":
            if output.shape != target.shape and output.numel() == target.numel():
                output = output.reshape(target.shape)
            return F.mse_loss(output, target)
        return F.cross_entropy(output, target)

    def optimizer(self, params) -> torch.optim.Optimizer:
        """AdamW with this recipe's lr and weight_decay (T5)."""
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def optimization(self, model: nn.Module, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
        """The optimizer and the per-step schedule (or None) that train `model` for `total_steps`:
        ``optimizer(model.parameters())`` and ``scheduler(optimizer, total_steps)``. Adapters whose
        optimizer is built from the model itself (a LightningModule's ``configure_optimizers``)
        override this."""
        optimizer = self.optimizer(model.parameters())
        return optimizer, self.scheduler(optimizer, total_steps)

    def metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Batch metrics, averaged over the validation set weighted by batch size.

        Classification: accuracy. Regression: mean absolute error. A tuple or list output (an
        RNN's ``(output, hidden)``) is read at its first element, a dict at ``logits``. An output
        these cannot be read from (a regression head that predicts a mean and a variance, logits
        for a custom loss) gives no metrics: a default never stops a training it cannot score.
        """
        if isinstance(output, dict):
            output = output.get("logits", next(iter(output.values()), None))
        while isinstance(output, (tuple, list)) and output:
            output = output[0]
        if not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor) or output.dim() == 0:
            return {}
        if self.task == "regression":
            if output.numel() != target.numel():
                return {}
            return {"mae": (output.reshape(target.shape) - target).abs().mean().item()}
        if output.dim() >= 2 and output.shape[-1] > 1 and output.shape == target.shape and target.is_floating_point():
            if not (target.min() >= 0 and torch.allclose(target.sum(-1), torch.ones(()), atol=1e-3)):
                return {}   # multi-hot labels (several classes per sample): top-1 accuracy means nothing
            target = target.argmax(-1)   # one-hot or soft labels
        if target.is_floating_point() or output.shape[:-1].numel() != target.numel():
            return {}   # binary logits of unknown kind, or an output that does not match the labels
        return {"acc": (output.argmax(-1).reshape(target.shape) == target).float().mean().item()}

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the model on a batch; return (output, target)."""
        x, y = batch
        return model(x), y

    def loaders(self, train: Dataset, val: Dataset) -> tuple[DataLoader, DataLoader]:
        """DataLoaders from batch_size; shuffle the training set only (D7)."""
        gen = torch.Generator()
        gen.manual_seed(self.seed)
        common: dict[str, Any] = {"batch_size": self.batch_size, "num_workers": self.num_workers}
        if self.num_workers:
            common["worker_init_fn"] = _seed_worker
            common["persistent_workers"] = False
        return (
            DataLoader(train, shuffle=True, generator=gen, **common),
            DataLoader(val, shuffle=False, **common),
        )

    def scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int):
        """Per-step LR schedule: linear warmup, then cosine down to min_lr (or constant) (T4, T5)."""
        warmup = max(0, min(self.warmup_steps, total_steps))
        floor = min(self.min_lr, self.lr) / self.lr if self.lr > 0 else 0.0
        cosine = self.schedule == "cosine"

        def factor(step: int) -> float:
            if step < warmup:
                return 0.01 + 0.99 * step / warmup
            if not cosine:
                return 1.0
            span = max(1, total_steps - warmup)
            progress = min(1.0, (step - warmup) / span)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    # ------------------------------------------------------------------ helpers
    def resolve_task(self, train: Dataset) -> str:
        """Set and return self.task, inferring it from the first training target when unset."""
        if self.task is None:
            self.task = infer_task(train)  # type: ignore[misc]  # the class default, resolved per instance
        elif self.task not in ("classification", "regression"):
            raise RecipeError(
                f"{type(self).__name__}.task is {self.task!r}; use 'classification', "
                "'regression' or leave it unset to infer it from the targets."
            )
        return self.task


def uses_default_loss(recipe: Recipe) -> bool:
    """Whether the recipe trains with danlu's own loss (cross-entropy or MSE) rather than one it
    wrote: only then are the class-prior and mean-predictor baselines in the loss's units, and
    must the output's shape match the target's as those losses need."""
    return type(recipe).loss is Recipe.loss


def infer_task(dataset: Dataset) -> str:
    """Integer targets mean classification; floating-point targets mean regression."""
    try:
        item = dataset[0]
    except Exception as exc:
        raise RecipeError(f"Could not read item 0 of the training set: {exc!r}") from exc
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise RecipeError(
            "Training items must be (input, target) pairs; item 0 is "
            f"{type(item).__name__}. Return pairs from your Dataset, or override forward()."
        )
    target = item[1]
    if isinstance(target, bool):
        return "classification"
    if isinstance(target, int):
        return "classification"
    if isinstance(target, float):
        return "regression"
    if isinstance(target, torch.Tensor):
        return "regression" if target.is_floating_point() else "classification"
    try:
        import numpy as np

        if isinstance(target, (np.ndarray, np.generic)):
            return "regression" if np.issubdtype(np.asarray(target).dtype, np.floating) else "classification"
    except ImportError:  # pragma: no cover
        pass
    raise RecipeError(
        f"Cannot infer the task from a target of type {type(target).__name__}; "
        "set `task = \"classification\"` or `task = \"regression\"` on the recipe."
    )


def _seed_worker(worker_id: int) -> None:
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


# ---------------------------------------------------------------- type checking
def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _check_type(cls: type[Recipe], name: str, tp: Any, value: Any) -> Any:
    """Validate a Python value for a field; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    ok = True
    if origin is Literal:
        ok = value in typing.get_args(tp)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is str:
        ok = isinstance(value, str)
    elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(cls, name, arg, value)
            except HyperparameterError:
                continue
        ok = False
    if not ok:
        raise HyperparameterError(
            f"{cls.__name__}.{name} expects {_type_name(tp)}, got {value!r} "
            f"({type(value).__name__}). Valid fields: {', '.join(sorted(cls.fields()))}."
        )
    return value


def _coerce(cls: type[Recipe], name: str, tp: Any, text: str) -> Any:
    """Turn a command-line string into a value of the field's declared type."""
    origin = typing.get_origin(tp)
    candidates = typing.get_args(tp) if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) else (tp,)
    if type(None) in candidates and text.lower() in ("none", "null"):
        return None
    for cand in candidates:
        if cand is type(None):
            continue
        try:
            if typing.get_origin(cand) is Literal:
                for choice in typing.get_args(cand):
                    if str(choice) == text:
                        return choice
                continue
            if cand is bool:
                low = text.lower()
                if low in _TRUE:
                    return True
                if low in _FALSE:
                    return False
                continue
            if cand is int:
                try:
                    return int(text)
                except ValueError:
                    as_float = float(text)  # accept 1e3
                    if as_float.is_integer():
                        return int(as_float)
                    continue
            if cand is float:
                return float(text)
            if cand is str:
                return text
        except ValueError:
            continue
    raise HyperparameterError(
        f"{cls.__name__}.{name} expects {_type_name(tp)}, got '{text}'. "
        f"Write it as {name}=<{_type_name(tp)}>. Valid fields: {', '.join(sorted(cls.fields()))}."
    )


# ------------------------------------------------------------- loading from files
def parse_overrides(items: list[str]) -> dict[str, str]:
    """Parse ['lr=1e-3', 'hidden=128'] into {'lr': '1e-3', 'hidden': '128'}."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not key.isidentifier():
            raise HyperparameterError(
                f"Cannot read the override '{item}': write hyperparameters as key=value, e.g. lr=1e-3."
            )
        if key in out:
            raise HyperparameterError(f"The hyperparameter '{key}' is given twice ('{item}').")
        out[key] = value.strip()
    return out


def split_spec(spec: str | Path) -> tuple[Path, str]:
    """'path.py:Name' -> (path, 'Name'); 'path.py' -> (path, '')."""
    text = str(spec)
    path_text, name = text, ""
    head, sep, tail = text.rpartition(":")
    if sep and tail.isidentifier() and not Path(text).exists():
        path_text, name = head, tail
    return Path(path_text).expanduser(), name


def import_recipe_file(spec: str | Path) -> tuple[Any, Path, str]:
    """Import the Python file of 'path.py[:Name]' as a fresh module: (module, resolved path, Name).
    A missing file, a folder, a syntax error or an import that raises is a RecipeError that
    names the file (and the line of the user's code that failed)."""
    text = str(spec)
    path, class_name = split_spec(spec)
    if path.is_dir():
        raise RecipeError(f"'{path}' is a folder; give the recipe file, e.g. {path}/recipe.py")
    if not path.exists():
        raise RecipeError(f"Recipe file '{path}' does not exist (from '{text}').")
    if path.suffix != ".py":
        raise RecipeError(f"Recipe file '{path}' is not a .py file.")
    path = path.resolve()
    module_name = "danlu_recipe_" + "".join(c if c.isalnum() else "_" for c in path.stem) + f"_{abs(hash(str(path))) % 10**8}"
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[module_name]
        raise RecipeError(f"Syntax error in recipe {exc.filename}:{exc.lineno}: {exc.msg}") from exc
    except Exception as exc:
        del sys.modules[module_name]
        frame = user_frame(exc, str(path)).splitlines()
        where = f" (at {frame[0]})" if frame else ""
        raise RecipeError(f"Importing recipe '{path}' failed{where}: {type(exc).__name__}: {exc}") from exc
    return module, path, class_name


def load_recipe_class(spec: str | Path) -> type[Recipe]:
    """Load a Recipe subclass from 'path.py' (exactly one subclass) or 'path.py:ClassName'."""
    return recipe_class_in(import_recipe_file(spec)[0], spec)


def recipe_class_in(module: Any, spec: str | Path) -> type[Recipe]:
    """The Recipe subclass `spec` names in the module imported from its file (the only one
    the file defines when `spec` names none)."""
    path, class_name = split_spec(spec)
    path = Path(module.__file__)
    module_name, path_text = module.__name__, str(split_spec(spec)[0])
    found = {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, Recipe) and obj is not Recipe
        and obj.__module__ == module_name
    }
    if class_name:
        obj = getattr(module, class_name, None)
        if obj is None or not (inspect.isclass(obj) and issubclass(obj, Recipe)):
            raise RecipeError(
                f"'{path.name}' has no Recipe subclass named '{class_name}'. "
                f"Found: {', '.join(sorted(found)) or 'none'}."
            )
        cls = obj
    elif len(found) == 1:
        cls = next(iter(found.values()))
    elif not found:
        raise RecipeError(
            f"'{path.name}' defines no danlu.Recipe subclass. Define one, e.g. "
            "`class MyRecipe(danlu.Recipe): ...`."
        )
    else:
        names = sorted(found)
        raise RecipeError(
            f"'{path.name}' defines {len(found)} Recipe subclasses ({', '.join(names)}); "
            f"pick one with '{path_text}:{names[0]}'."
        )
    cls.fields()  # validate annotations early
    cls.__danlu_source__ = str(path)  # type: ignore[attr-defined]
    cls.__danlu_spec__ = f"{path}:{cls.__name__}"  # type: ignore[attr-defined]
    return cls


def load_recipe(spec: str | Path, overrides: dict[str, str] | list[str] | None = None) -> Recipe:
    """Load a recipe file and instantiate it with command-line style overrides."""
    cls = load_recipe_class(spec)
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    return cls.from_strings(overrides or {})


def recipe_source(recipe: Recipe | type[Recipe]) -> Path | None:
    """The file a recipe class was defined in, if known."""
    cls = recipe if isinstance(recipe, type) else type(recipe)
    source = getattr(cls, "__danlu_source__", None)
    if source:
        return Path(source)
    try:
        return Path(inspect.getfile(cls)).resolve()
    except (TypeError, OSError):
        return None


def recipe_spec(recipe: Recipe | type[Recipe]) -> str:
    """How runs record a recipe: 'path/to/file.py:ClassName' (the class name alone without a file)."""
    cls = recipe if isinstance(recipe, type) else type(recipe)
    spec = getattr(recipe, "__danlu_spec__", None)  # an instance's own (an adapter's), else its class's
    if spec:
        return str(spec)
    source = recipe_source(cls)
    return f"{source}:{cls.__name__}" if source else cls.__name__


def recipe_name(recipe: Recipe) -> str:
    """The name a report calls a recipe by: its class, or what an adapter wraps (a LightningModule
    class, a Trainer's builder)."""
    return recipe_spec(recipe).rpartition(":")[2] or type(recipe).__name__


#: The inherited hyperparameters' valid ranges: (test, what the value must be).
_RANGES: dict[str, tuple[Any, str]] = {
    "lr": (lambda v: math.isfinite(v) and v >= 0, "a finite number of at least 0, e.g. lr=3e-4"),
    "batch_size": (lambda v: v >= 1, "at least 1, e.g. batch_size=64"),
    "epochs": (lambda v: v >= 1, "at least 1, e.g. epochs=10"),
    "weight_decay": (lambda v: math.isfinite(v) and v >= 0, "a finite number of at least 0, e.g. weight_decay=0.01"),
    "warmup_steps": (lambda v: v >= 0, "at least 0 (0 = no warmup)"),
    "min_lr": (lambda v: math.isfinite(v) and v >= 0, "a finite number of at least 0, e.g. min_lr=1e-5"),
    "patience": (lambda v: v >= 0, "at least 0 (0 = never stop early)"),
    "probe_every": (lambda v: v >= 1, "at least 1, e.g. probe_every=50"),
    "grad_clip": (lambda v: math.isfinite(v) and v >= 0, "a finite number of at least 0 (0 = no clipping)"),
    "num_workers": (lambda v: v >= 0, "at least 0 (0 = load in the main process)"),
    "accumulate": (lambda v: v >= 1, "at least 1 (1 = no accumulation)"),
    "checkpoint_every": (lambda v: v >= 0, "at least 0 (0 = checkpoint at epoch ends only)"),
}


def check_values(recipe: Recipe) -> None:
    """Values of the inherited hyperparameters that cannot work (epochs=-1, lr=inf, batch_size=0) are
    a HyperparameterError naming the field and what it must be, before anything runs."""
    name = type(recipe).__name__
    for field, (ok, must) in _RANGES.items():
        value = getattr(recipe, field, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not ok(value):
            raise HyperparameterError(f"{name}.{field} is {value!r}, which cannot work: it must be {must}.")


def check_data(recipe: Recipe, out: Any) -> tuple[Dataset, Dataset]:
    """What data() returned, as (train, val) of items; anything else (one or three datasets, an empty
    split) is a RecipeError that says what to return."""
    name = type(recipe).__name__
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        got = f"{type(out).__name__} of length {len(out)}" if isinstance(out, (tuple, list)) else type(out).__name__
        raise RecipeError(f"{name}.data() must return (train, val): two datasets; it returned {got}. "
                          "Return e.g. `TensorDataset(x_train, y_train), TensorDataset(x_val, y_val)`.")
    for split, dataset in zip(("training", "validation"), out):
        try:
            size = len(dataset)
        except TypeError:  # an IterableDataset has no length: nothing to check here
            continue
        if size == 0 and not (split == "validation" and recipe.loss_only):  # Lightning runs without a val loop
            raise RecipeError(f"{name}.data() returned an empty {split} set: there is nothing to "
                              f"{'train on' if split == 'training' else 'validate on'}. Check the path, the "
                              "filter or the split that builds it.")
    return out[0], out[1]


def check_model(recipe: Recipe, model: Any) -> nn.Module:
    """What model() returned, when it is an nn.Module; anything else is a RecipeError."""
    if not isinstance(model, nn.Module):
        raise RecipeError(f"{type(recipe).__name__}.model() must return a torch.nn.Module; it returned "
                          f"{type(model).__name__}. Build and return the network, e.g. `return nn.Sequential(...)`.")
    return model
