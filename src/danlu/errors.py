"""danlu's exceptions. Every message says what failed, where, and the fix.

    DanluError
    ├── RecipeError          a recipe file or class cannot be used
    │   └── HyperparameterError   an override names an unknown field or has the wrong type
    ├── StoreError           the run store cannot be opened or written
    │   └── RunNotFound      RUN names no run (or names several)
    └── MissingExtra         an optional dependency is not installed
"""

from __future__ import annotations

__all__ = [
    "DanluError",
    "RecipeError",
    "HyperparameterError",
    "StoreError",
    "RunNotFound",
    "MissingExtra",
]


class DanluError(Exception):
    """Base of every error danlu raises on purpose; the CLI prints these without a traceback."""

    exit_code = 2


class RecipeError(DanluError):
    """A recipe file, class or method cannot be used."""


class HyperparameterError(RecipeError):
    """A hyperparameter override is unknown or has a value of the wrong type."""


class StoreError(DanluError):
    """The run store cannot be opened, read or written."""


class RunNotFound(StoreError):
    """A run reference (id, id prefix, name or ``last``) matched no run, or several."""


class MissingExtra(DanluError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{module}' package, which is not installed. "
            f"Install it with: pip install 'danlu[{extra}]'"
        )
        self.module = module
        self.extra = extra


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise MissingExtra naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtra(module, extra, purpose) from exc
