"""danlu (丹炉): a PyTorch workbench that turns training folklore into checks that run.

Public names are imported on first use, so `import danlu` and the `danlu` command start
without loading torch until a recipe, the engine or a check needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Recipe": "danlu.recipe",
    "load_recipe": "danlu.recipe",
    "load_recipe_class": "danlu.recipe",
    "Report": "danlu.report",
    "Finding": "danlu.report",
    "Table": "danlu.report",
    "DanluError": "danlu.errors",
    "RecipeError": "danlu.errors",
    "HyperparameterError": "danlu.errors",
    "StoreError": "danlu.errors",
    "RunNotFound": "danlu.errors",
    "init": "danlu.track",
    "Run": "danlu.track",
    "watch": "danlu.watcher",
    "fit": "danlu.engine",
    "Callback": "danlu.events",
    "check": "danlu.api",
    "audit": "danlu.api",
    "cases": "danlu.api",
    "diagnose": "danlu.api",
    "lr_find": "danlu.api",
    "reproduce": "danlu.api",
    "diff": "danlu.api",
    "study": "danlu.api",
    "import_logs": "danlu.api",
    "export_runs": "danlu.api",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from danlu.api import audit, cases, check, diagnose, diff, export_runs, import_logs, lr_find, reproduce, study
    from danlu.engine import fit
    from danlu.errors import DanluError, HyperparameterError, RecipeError, RunNotFound, StoreError
    from danlu.events import Callback
    from danlu.recipe import Recipe, load_recipe, load_recipe_class
    from danlu.report import Finding, Report, Table
    from danlu.track import Run, init
    from danlu.watcher import watch


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'danlu' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
