"""Other frameworks' training set-ups as recipes, so the doctor runs on them unchanged.

    danlu check module.py:MyLightningModule --datamodule module.py:MyDataModule
    danlu check build.py:make_trainer          # a function returning a transformers.Trainer

    danlu.check(LitModel(), datamodule=MyDataModule())
    danlu.check(trainer)

A :class:`LightningRecipe` trains with the module's own ``training_step`` and
``configure_optimizers`` (its scheduler stepped at its interval and frequency); a
:class:`TrainerRecipe` with the Trainer's ``compute_loss``, its optimizer settings,
schedule, gradient clipping and precision from the ``TrainingArguments``. Both give only a
loss (``Recipe.loss_only``): the model computes it, so the checks that compare the output
with the target (S4 initial loss, S7 outputs vs loss, S10 batch independence) skip and say
why, and the overfitting checks (S2, S3) count a batch as fitted once its loss halved.
Nothing here imports Lightning or transformers unless such an object is given.
"""

from __future__ import annotations

import ast
import copy
import inspect
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from danlu.errors import RecipeError
from danlu.recipe import Recipe, import_recipe_file, split_spec

__all__ = ["LightningRecipe", "TrainerRecipe", "foreign_recipe", "load_foreign", "call_with_strings"]


# ------------------------------------------------------------------ recognising objects
def _is(obj: Any, module: str, names: tuple[str, ...]) -> bool:
    """isinstance(obj, module.<name>) for any name, without importing `module` when nobody did."""
    loaded = sys.modules.get(module)
    return loaded is not None and any(isinstance(obj, getattr(loaded, n)) for n in names if hasattr(loaded, n))


def _lightning_module(obj: Any) -> bool:
    return _is(obj, "lightning.pytorch", ("LightningModule",)) or _is(obj, "pytorch_lightning", ("LightningModule",))


def _hf_trainer(obj: Any) -> bool:
    return _is(obj, "transformers", ("Trainer",))


def foreign_recipe(obj: Any, datamodule: Any = None) -> Recipe | None:
    """A recipe for a LightningModule (with its datamodule), a transformers Trainer, or a dict of
    the Trainer's parts (``model``, ``train_dataset``, ``eval_dataset``, ``data_collator``,
    ``args``); None for anything else."""
    if isinstance(obj, tuple) and len(obj) == 2 and _lightning_module(obj[0]) and datamodule is None:
        obj, datamodule = obj
    if _lightning_module(obj):
        return LightningRecipe(obj, datamodule)
    if datamodule is not None:
        raise RecipeError(f"a datamodule goes with a LightningModule; got {type(obj).__name__}")
    if _hf_trainer(obj):
        return TrainerRecipe(obj)
    if isinstance(obj, Mapping) and "model" in obj and "train_dataset" in obj:
        from transformers import Trainer, TrainingArguments

        parts = dict(obj)
        parts.setdefault("args", TrainingArguments(output_dir="danlu-check", report_to=[]))
        return TrainerRecipe(Trainer(**parts))
    return None


def load_foreign(module: Any, spec: str, overrides: Mapping[str, str] | None = None,
                 datamodule: Any = None) -> Recipe:
    """The recipe for 'file.py:Name' (its file imported as `module`), where Name is a
    LightningModule class or an entry point (a function returning a LightningModule,
    ``(module, datamodule)``, a Trainer or a dict of the Trainer's parts). ``k=v`` overrides
    become its keyword arguments; `datamodule` is an object or 'file.py:ClassName'."""
    path, name = Path(module.__file__), split_spec(spec)[1]
    if not name:
        raise RecipeError(f"name what to check in '{path.name}', e.g. '{path.name}:MyLightningModule' or "
                          f"'{path.name}:make_trainer'")
    obj = getattr(module, name, None)
    if obj is None:
        raise RecipeError(f"'{path.name}' has no '{name}'")
    if not callable(obj):
        raise RecipeError(f"'{path.name}:{name}' is a {type(obj).__name__}; give a Recipe subclass, a "
                          "LightningModule class or a function that builds the set-up")
    from danlu.repro import seed_everything

    seed_everything(0)  # a module's initial weights are drawn as it is built: the same on every check
    built = call_with_strings(obj, overrides or {}, f"{path.name}:{name}")
    dm = datamodule
    if isinstance(datamodule, (str, Path)):
        dm_module, dm_path, dm_name = import_recipe_file(datamodule)
        if not dm_name or getattr(dm_module, dm_name, None) is None:
            raise RecipeError(f"a datamodule is named 'file.py:ClassName'; '{datamodule}' names nothing its file "
                              "defines")
        dm = call_with_strings(getattr(dm_module, dm_name), {}, f"{dm_path.name}:{dm_name}")
    recipe = foreign_recipe(built, dm)
    if recipe is None:
        raise RecipeError(f"'{path.name}:{name}' built a {type(built).__name__}; danlu checks a Recipe, a "
                          "LightningModule (with its datamodule) or a transformers Trainer")
    recipe.__danlu_spec__ = f"{path}:{name}"
    return recipe


def call_with_strings(fn: Callable[..., Any], overrides: Mapping[str, str], what: str) -> Any:
    """Call a class or function with command-line ``k=v`` strings as keyword arguments, each
    turned into the type of the parameter's default (a Python literal when there is none)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, Any] = {}
    for key, text in overrides.items():
        if key not in params and not takes_any:
            names = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            raise RecipeError(f"{what} takes no argument '{key}'; it takes: {', '.join(names) or 'none'}")
        default = params[key].default if key in params else inspect.Parameter.empty
        kwargs[key] = _from_string(text, default)
    try:
        return fn(**kwargs)
    except TypeError as exc:
        raise RecipeError(f"building {what} failed: {exc}. Give its arguments as k=v") from exc


def _from_string(text: str, default: Any) -> Any:
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            return type(default)(text)
        except ValueError:
            return float(text)
    if isinstance(default, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# ------------------------------------------------------------------ shared parts
class _Interval:
    """A scheduler stepped once every `every` optimizer steps (Lightning's "epoch" interval and
    "frequency"), so a decay meant per epoch does not happen per batch."""

    def __init__(self, scheduler: Any, every: int) -> None:
        self.scheduler, self.every, self.count = scheduler, max(1, every), 0

    def step(self) -> None:
        self.count += 1
        if self.count % self.every == 0:
            self.scheduler.step()

    @property
    def base_lrs(self) -> list[float]:
        return self.scheduler.base_lrs

    @base_lrs.setter
    def base_lrs(self, value: list[float]) -> None:
        self.scheduler.base_lrs = value

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        self.count = state["count"]


def _no_val(train: Dataset) -> Dataset:
    return Subset(train, [])


class _Adapter(Recipe):
    """What both adapters share: the wrapped model copied per check, the loaders built once."""

    task = None

    def __init__(self, model: nn.Module, **fields: Any) -> None:
        super().__init__(**fields)
        self._model = model
        self._loaders: tuple[DataLoader, DataLoader] | None = None
        kind = type(model)
        try:
            self.__danlu_spec__ = f"{inspect.getfile(kind)}:{kind.__qualname__}"
        except (TypeError, OSError):
            self.__danlu_spec__ = kind.__qualname__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self._model).__name__})"

    def model(self) -> nn.Module:
        return copy.deepcopy(self._model)

    def loss(self, output: Any, target: Any) -> torch.Tensor:
        return output  # forward() already returned the loss

    def loaders(self, train: Dataset, val: Dataset) -> tuple[DataLoader, DataLoader]:
        if self._loaders is None:
            self.data()
        assert self._loaders is not None
        return self._loaders

    def _keep_loaders(self, train: DataLoader, val: DataLoader | None) -> tuple[Dataset, Dataset]:
        if not isinstance(train, DataLoader):
            raise RecipeError(f"{self.loss_only} set-up: the training data must be one DataLoader; got "
                              f"{type(train).__name__} (several loaders are not supported)")
        from danlu.checks.context import loader_batch_size

        val_set = val.dataset if isinstance(val, DataLoader) else _no_val(train.dataset)
        size = loader_batch_size(train)
        if size:
            self.batch_size = size       # what the doctor draws its batches with (a batch_sampler's too)
        if not isinstance(val, DataLoader):
            val = DataLoader(val_set, batch_size=size or 1, collate_fn=train.collate_fn)
        self._loaders = (train, val)
        return train.dataset, val_set

    def _loss_of(self, out: Any, where: str) -> torch.Tensor:
        loss = out.get("loss") if isinstance(out, Mapping) else getattr(out, "loss", out)
        if not isinstance(loss, torch.Tensor):
            raise RecipeError(f"{where} returned {type(out).__name__}, not a loss: it must give the loss tensor "
                              "(or a dict / model output with 'loss')")
        return loss


# ------------------------------------------------------------------ Lightning
class LightningRecipe(_Adapter):
    """A LightningModule (and its LightningDataModule) as a recipe: ``training_step`` is the step,
    ``configure_optimizers`` the optimizer and schedule, the datamodule's (else the module's)
    ``train_dataloader`` and ``val_dataloader`` the data. Trainer settings (gradient clipping,
    precision, accumulation) are not in the module: pass them as ``grad_clip=``, ``precision=``."""

    loss_only = "the LightningModule's training_step"

    def __init__(self, module: nn.Module, datamodule: Any = None, **fields: Any) -> None:
        super().__init__(module, **fields)
        if getattr(module, "automatic_optimization", True) is False:
            raise RecipeError(f"{type(module).__name__} uses manual optimization (automatic_optimization = False): "
                              "its training_step takes the optimizer step itself, so the doctor cannot run it step "
                              "by step")
        self._datamodule = datamodule

    def hparams(self) -> dict[str, Any]:
        from danlu.plain import jsonable

        return {str(k): jsonable(v) for k, v in dict(getattr(self._model, "hparams", {}) or {}).items()}

    def data(self) -> tuple[Dataset, Dataset]:
        source = self._datamodule if self._datamodule is not None else self._model
        if self._datamodule is not None:
            self._datamodule.prepare_data()
            self._datamodule.setup("fit")
        _call_hook(self._model, "setup", "fit")
        train = source.train_dataloader()
        val = source.val_dataloader() if _overridden(source, "val_dataloader") else None
        return self._keep_loaders(train, val)

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, None]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # self.log(...) outside a Trainer warns on every call
            self._new_epoch_if_resized(model, batch)
            out = model.training_step(batch, 0)  # type: ignore[operator]
        if out is None:
            raise RecipeError("training_step returned None (Lightning skips such a batch): on this batch it must "
                              "return the loss")
        return self._loss_of(out, "training_step"), None

    @staticmethod
    def _new_epoch_if_resized(model: nn.Module, batch: Any) -> None:
        """Batches of another size than the last one this copy saw start a new epoch: the module's
        epoch hooks run, as Lightning runs them between epochs. A module that carries state from
        batch to batch (Lightning's own LSTM demo keeps its hidden state and resets it at epoch end)
        trains with one batch size per epoch, while the doctor's checks use several."""
        from danlu.batches import batch_size_of

        try:
            size = batch_size_of(batch)
        except Exception:  # noqa: BLE001 - a batch whose size danlu cannot read: nothing to compare
            return
        last = getattr(model, "_danlu_batch_size", None)
        object.__setattr__(model, "_danlu_batch_size", size)
        if last is None or last == size:
            return
        for hook in ("on_train_epoch_end", "on_train_epoch_start"):
            if _overridden(model, hook):
                try:
                    getattr(model, hook)()
                except Exception:  # noqa: BLE001 - a hook that needs a Trainer: the module keeps its state
                    pass

    def optimization(self, model: nn.Module, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
        optimizers, schedulers = _lightning_optimizers(model.configure_optimizers())  # type: ignore[operator]
        if len(optimizers) != 1:
            raise RecipeError(f"configure_optimizers returned {len(optimizers)} optimizers; automatic optimization "
                              "trains with one")
        if not schedulers:
            return optimizers[0], None
        config = schedulers[0]
        scheduler = config["scheduler"]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            return optimizers[0], None  # it steps on a monitored metric the doctor's short runs never have
        per_epoch = len(self.loaders(None, None)[0]) if config.get("interval", "epoch") == "epoch" else 1  # type: ignore[arg-type]
        return optimizers[0], _Interval(scheduler, per_epoch * int(config.get("frequency", 1)))


def _overridden(obj: Any, name: str) -> bool:
    """Whether `obj`'s own code defines hook `name` (Lightning's defaults raise or do nothing)."""
    for klass in type(obj).__mro__:
        if name in vars(klass):   # Lightning's own defaults live in its core package (its demos do not)
            return not klass.__module__.startswith(("lightning.pytorch.core", "pytorch_lightning.core",
                                                    "lightning.fabric", "lightning_fabric"))
    return False


def _call_hook(obj: Any, name: str, *args: Any) -> None:
    if _overridden(obj, name):
        getattr(obj, name)(*args)


def _lightning_optimizers(conf: Any) -> tuple[list[torch.optim.Optimizer], list[dict[str, Any]]]:
    """configure_optimizers' every documented return form -> (optimizers, scheduler configs)."""
    if conf is None:
        raise RecipeError("configure_optimizers returned None: Lightning then trains without an optimizer, "
                          "and so can nothing else; return the optimizer")
    if isinstance(conf, torch.optim.Optimizer):
        return [conf], []
    if isinstance(conf, Mapping):
        return [conf["optimizer"]], _scheduler_configs([conf["lr_scheduler"]] if conf.get("lr_scheduler") else [])
    if isinstance(conf, (list, tuple)):
        if len(conf) == 2 and isinstance(conf[0], (list, tuple)):
            scheds = conf[1] if isinstance(conf[1], (list, tuple)) else [conf[1]]
            return list(conf[0]), _scheduler_configs(list(scheds))
        if all(isinstance(c, Mapping) for c in conf):
            opts, scheds = [], []
            for c in conf:
                o, s = _lightning_optimizers(c)
                opts += o
                scheds += s
            return opts, scheds
        if all(isinstance(c, torch.optim.Optimizer) for c in conf):
            return list(conf), []
    raise RecipeError(f"configure_optimizers returned {type(conf).__name__}, which is not one of Lightning's "
                      "documented forms (an optimizer, a dict with 'optimizer', or lists of optimizers and schedulers)")


def _scheduler_configs(items: list[Any]) -> list[dict[str, Any]]:
    return [dict(item) if isinstance(item, Mapping) else {"scheduler": item} for item in items]


# ------------------------------------------------------------------ Hugging Face
class TrainerRecipe(_Adapter):
    """A transformers ``Trainer`` (built, not trained) as a recipe: the step is its
    ``compute_loss`` on a copy of its model; the optimizer, schedule, gradient clipping,
    precision, batch size, epochs and seed come from its ``TrainingArguments``."""

    loss_only = "the Trainer's compute_loss (the model's own loss)"

    def __init__(self, trainer: Any) -> None:
        args = trainer.args
        precision = "bf16" if getattr(args, "bf16", False) else "16" if getattr(args, "fp16", False) else "32"
        super().__init__(trainer.model, seed=int(args.seed), lr=float(args.learning_rate),
                         batch_size=int(args.per_device_train_batch_size),
                         epochs=max(1, int(round(float(args.num_train_epochs)))),
                         weight_decay=float(args.weight_decay), grad_clip=float(args.max_grad_norm or 0.0),
                         precision=precision)
        if trainer.train_dataset is None:
            raise RecipeError("the Trainer has no train_dataset: give Trainer(train_dataset=...)")
        self._trainer = trainer

    def hparams(self) -> dict[str, Any]:
        args = self._trainer.args
        keys = ("learning_rate", "weight_decay", "per_device_train_batch_size", "num_train_epochs", "max_steps",
                "max_grad_norm", "lr_scheduler_type", "warmup_steps", "gradient_accumulation_steps", "seed",
                "bf16", "fp16", "optim")
        return {k: getattr(args, k) for k in keys if hasattr(args, k)} | {"model": type(self._model).__name__}

    def data(self) -> tuple[Dataset, Dataset]:
        trainer = self._trainer
        train = trainer.get_train_dataloader()
        val = trainer.get_eval_dataloader() if trainer.eval_dataset is not None else None
        # accelerate's loaders hand out batches in their own order; the doctor draws its own,
        # so it keeps the datasets as the Trainer feeds them (unused columns removed) and the collator
        plain_train = DataLoader(train.dataset, batch_size=self.batch_size, shuffle=True, collate_fn=train.collate_fn)
        plain_val = DataLoader(val.dataset, batch_size=self.batch_size, collate_fn=val.collate_fn) if val else None
        return self._keep_loaders(plain_train, plain_val)

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, None]:
        if not isinstance(batch, Mapping):
            raise RecipeError(f"the data collator gave a {type(batch).__name__}; a Trainer's model takes a dict "
                              "of tensors")
        return self._loss_of(self._trainer.compute_loss(model, dict(batch)), "Trainer.compute_loss"), None

    def optimization(self, model: nn.Module, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
        from transformers import get_scheduler

        trainer, args = self._trainer, self._trainer.args
        decay = set(trainer.get_decay_parameter_names(model))
        groups = [
            {"params": [p for n, p in model.named_parameters() if n in decay and p.requires_grad],
             "weight_decay": args.weight_decay},
            {"params": [p for n, p in model.named_parameters() if n not in decay and p.requires_grad],
             "weight_decay": 0.0},
        ]
        optimizer_cls, kwargs = trainer.get_optimizer_cls_and_kwargs(args, model)
        optimizer = optimizer_cls([g for g in groups if g["params"]], **kwargs)
        scheduler = get_scheduler(args.lr_scheduler_type, optimizer,
                                  num_warmup_steps=args.get_warmup_steps(total_steps), num_training_steps=total_steps)
        return optimizer, scheduler
