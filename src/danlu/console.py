"""The rich consoles every command prints through (stdout for results, stderr for messages)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

__all__ = ["console", "err_console", "escape", "STATUS_STYLE"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

#: Colour of each report/run status, shared by every terminal view.
STATUS_STYLE = {
    "pass": "green",
    "info": "cyan",
    "skip": "dim",
    "warn": "yellow",
    "fail": "bold red",
    "running": "cyan",
    "finished": "green",
    "failed": "red",
    "crashed": "bold red",
    "stopped": "yellow",
}
