"""The engine's events and the Callback base: what extras of `fit()` can hang on.

Events, dispatched in this order by the engine (locked by a test):
    on_fit_start, (on_step_end, [on_probe_end])*, on_epoch_end, ..., on_fit_end
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:  # pragma: no cover
    from danlu.engine import FitState

__all__ = ["Event", "EVENTS", "Callback", "check_hooks"]

Event = Literal["on_fit_start", "on_step_end", "on_probe_end", "on_epoch_end", "on_fit_end"]
#: The engine's events, in the order of a run (locked by a test).
EVENTS: tuple[Event, ...] = get_args(Event)


class Callback:
    """Base for engine extras; override any of the EVENTS. Each receives the FitState.

    A method named like an event that is not one (``on_epoch_ends``) is an error when the
    callback is given to :func:`fit`, not a hook that silently never runs.
    """

    def on_fit_start(self, state: FitState) -> None: ...
    def on_step_end(self, state: FitState) -> None: ...
    def on_probe_end(self, state: FitState) -> None: ...
    def on_epoch_end(self, state: FitState) -> None: ...
    def on_fit_end(self, state: FitState) -> None: ...


def check_hooks(callback: Any) -> None:
    """A misspelt hook is an error that names the event meant, not a hook that never runs."""
    names = [n for n in dir(callback) if n.startswith("on_") and callable(getattr(callback, n, None))]
    unknown = [n for n in names if n not in EVENTS]
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, EVENTS, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise TypeError(f"{type(callback).__name__}.{name} is not an engine event{hint} "
                        f"The events are {', '.join(EVENTS)}.")
    if not any(callable(getattr(callback, e, None)) for e in EVENTS):
        raise TypeError(f"{type(callback).__name__} has none of the engine's events ({', '.join(EVENTS)}); "
                        "it would never be called.")
