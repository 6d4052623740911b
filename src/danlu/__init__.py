"""danlu (丹炉): a PyTorch workbench that turns training folklore into checks that run."""

from __future__ import annotations

__version__ = "0.1.0"

from danlu.errors import DanluError, HyperparameterError, RecipeError, RunNotFound, StoreError
from danlu.recipe import Recipe, load_recipe, load_recipe_class
from danlu.report import Finding, Report, Table

__all__ = [
    "__version__",
    "Recipe",
    "load_recipe",
    "load_recipe_class",
    "Report",
    "Finding",
    "Table",
    "DanluError",
    "RecipeError",
    "HyperparameterError",
    "StoreError",
    "RunNotFound",
    "init",
    "watch",
    "fit",
]


def __getattr__(name: str):
    # Lazy imports keep `import danlu` light (no store, engine or doctor until used).
    if name == "init":
        from danlu.track import init

        return init
    if name == "watch":
        from danlu.doctor.watch import watch

        return watch
    if name == "fit":
        from danlu.engine import fit

        return fit
    raise AttributeError(f"module 'danlu' has no attribute {name!r}")
