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
    "StoreMissing",
    "MissingExtra",
    "require",
    "error_text",
    "error_kind",
    "user_frame",
    "is_user_file",
    "in_user_code",
    "short_traceback",
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


class StoreMissing(StoreError):
    """There is no store at the path given (and the command only reads, so it does not create one)."""


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


# ------------------------------------------------------------------ describing errors
def error_text(exc: BaseException, limit: int = 300, *, frame: bool = False) -> str:
    """'ValueError: first line of the message' (cut at `limit`); with `frame`, the raising
    file and line are appended, as in 'ValueError: bad value (data.py:12)'."""
    import traceback
    from pathlib import Path

    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(message) > limit:
        message = message[: limit - 3] + "..."
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if frame:
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            text += f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})"
    return text


def error_kind(message: str) -> str:
    """An error message with its numbers blanked: the same error raised at different points
    ("shapes 32x4 and 8x56", "64x4 and 8x56": other batch sizes, other widths) is one kind, in
    a study's failed trials (T2) and in the checks a recipe's crash broke."""
    import re

    return re.sub(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", message)


def _library_roots() -> list[str]:
    import sysconfig
    from pathlib import Path

    import danlu

    roots = [str(Path(danlu.__file__).resolve().parent)]
    try:
        import torch

        roots.append(str(Path(torch.__file__).resolve().parent))
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.append(str(Path(path).resolve()))
    return roots


def is_user_file(filename: str, roots: list[str] | None = None) -> bool:
    """True for files that are neither danlu's, torch's, the standard library's nor installed packages'."""
    from pathlib import Path

    if not filename or filename.startswith("<"):
        return False
    try:
        path = str(Path(filename).resolve())
    except OSError:  # pragma: no cover
        return False
    if "site-packages" in path or "dist-packages" in path:
        return False
    return not any(path.startswith(root) for root in (roots or _library_roots()))


def user_frame(exc: BaseException, filename: str | None = None) -> str:
    """'file:line in func' plus the code line, for the last traceback frame in the user's files.

    With `filename`, the last frame in that file. Falls back to the last frame outside
    torch when no user file is involved (e.g. a bad target in danlu's default loss), so
    the message always points somewhere useful; "" when the exception has no traceback.
    """
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if filename is not None:
        chosen = next((f for f in reversed(frames) if f.filename == filename), None)
    else:
        roots = _library_roots()
        chosen = next((f for f in reversed(frames) if is_user_file(f.filename, roots)), None)
        if chosen is None:
            torch_root = roots[1] if len(roots) > 1 else "\0"
            chosen = next((f for f in reversed(frames) if not f.filename.startswith(torch_root)), None)
        if chosen is None and frames:
            chosen = frames[-1]
    if chosen is None:
        return ""
    text = f"{chosen.filename}:{chosen.lineno} in {chosen.name}"
    if chosen.line:
        text += f"\n    {chosen.line.strip()}"
    return text


def in_user_code(exc: BaseException) -> bool:
    """Whether any frame of the traceback lies in the user's own files."""
    import traceback

    roots = _library_roots()
    return any(is_user_file(f.filename, roots) for f in traceback.extract_tb(exc.__traceback__))


def short_traceback(exc: BaseException, frames: int = 6) -> str:
    """The last few frames of a traceback, for a finding's details."""
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    tail = text.strip().splitlines()
    return "\n".join(tail[-2 * frames - 1:])
