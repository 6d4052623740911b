"""The search space of a study: the `--vary` syntax, parsed into Optuna distributions.

Syntax, one token per varied hyperparameter (practices H1, H2: vary a few, fix the rest)::

    lr=1e-5..1e-1:log          a float range, sampled on a log scale
    weight_decay=0..0.1        a float range, uniform
    hidden=16..256:int         an integer range (implied when the recipe field is an int)
    hidden=16..256:log,int     an integer range on a log scale
    batch_size=16,32,64,128    a list of choices (typed by the recipe's field)
    schedule=cosine,constant   choices of a text or Literal field

Every mistake is a :class:`SpaceError` that quotes the token and shows the fix. A
:class:`Param` knows its Optuna distribution, how to write itself back as a token,
whether a value sits at the edge of its range (axis plots flag it: "widen the range"),
and how to narrow itself around good values (exploit mode).
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from danlu.errors import HyperparameterError

__all__ = ["Param", "Space", "SpaceError", "parse_vary", "parse_param"]

_SYNTAX = "NAME=LOW..HIGH[:log][,int] or NAME=A,B,C (e.g. lr=1e-5..1e-1:log, batch_size=16,32,64)"
_OPTIONS = ("log", "int")


class SpaceError(HyperparameterError):
    """A `--vary` token cannot be read or does not fit the recipe; the message is the fix."""


@dataclass(frozen=True)
class Param:
    """One varied hyperparameter: a float/int range or a list of choices."""

    name: str
    kind: Literal["float", "int", "choice"]
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    # ------------------------------------------------------------ Optuna
    def distribution(self):
        """The Optuna distribution sampling this parameter."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "float":
            return FloatDistribution(float(self.low), float(self.high), log=self.log)
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return CategoricalDistribution(list(self.choices))

    def suggest(self, trial) -> Any:
        """Ask an Optuna trial for this parameter (a queued trial returns its fixed value)."""
        if self.kind == "float":
            return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    # ------------------------------------------------------------- text
    def token(self) -> str:
        """This parameter written back in the `--vary` syntax (parse_param(p.token()) == p)."""
        if self.kind == "choice":
            return f"{self.name}=" + ",".join(_fmt(c) for c in self.choices)
        opts = [o for o, on in (("log", self.log), ("int", self.kind == "int")) if on]
        return f"{self.name}={_fmt(self.low)}..{_fmt(self.high)}" + (":" + ",".join(opts) if opts else "")

    @property
    def numeric(self) -> bool:
        """Ranges, and choices that are all numbers (so they have an order and edges)."""
        if self.kind != "choice":
            return True
        return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in self.choices)

    # ----------------------------------------------------- edges (axis plots)
    def position(self, value: Any) -> float | None:
        """Where a value lies in the range, 0 (low) .. 1 (high), on the sampling scale.
        Numeric choices use their rank; text choices have no position (None)."""
        if self.kind == "choice":
            if not self.numeric or len(self.choices) < 2:
                return None
            ordered = sorted(self.choices)
            return ordered.index(value) / (len(ordered) - 1) if value in ordered else None
        lo, hi, v = float(self.low), float(self.high), float(value)
        if self.log:
            lo, hi, v = math.log(lo), math.log(hi), math.log(max(v, 1e-300))
        return (v - lo) / (hi - lo) if hi > lo else None

    def edge(self, value: Any, margin: float = 0.1) -> Literal["low", "high"] | None:
        """'low'/'high' when a value is in the outer `margin` of the range (an ordered choice
        list: its first/last choice), so the best could lie beyond it; else None."""
        pos = self.position(value)
        if pos is None:
            return None
        if self.kind == "choice":
            return "low" if pos == 0 else "high" if pos == 1 else None
        return "low" if pos <= margin else "high" if pos >= 1 - margin else None

    # ------------------------------------------------------ narrowing (exploit)
    def narrowed(self, values: Sequence[Any], pad: float = 0.25) -> Param:
        """A range spanning `values` (the good trials' settings), padded by `pad` of that
        span on the sampling scale and kept inside the original range; choices keep only
        those seen among `values`. With no values, the parameter is returned unchanged."""
        vals = [v for v in values if v is not None]
        if not vals:
            return self
        if self.kind == "choice":
            keep = tuple(c for c in self.choices if c in vals)
            return Param(self.name, "choice", choices=keep or self.choices)
        to = (lambda x: math.log(x)) if self.log else float
        back = (lambda x: math.exp(x)) if self.log else (lambda x: x)
        lo_t, hi_t = to(float(self.low)), to(float(self.high))
        vlo, vhi = min(to(float(v)) for v in vals), max(to(float(v)) for v in vals)
        span = max(vhi - vlo, 0.1 * (hi_t - lo_t))
        new_lo, new_hi = max(lo_t, vlo - pad * span), min(hi_t, vhi + pad * span)
        low, high = back(new_lo), back(new_hi)
        if self.kind == "int":
            low, high = int(math.floor(low + 1e-9)), int(math.ceil(high - 1e-9))
            low, high = max(int(self.low), low), min(int(self.high), high)
            if low >= high:
                low, high = max(int(self.low), low - 1), min(int(self.high), high + 1)
        else:
            low, high = float(max(float(self.low), low)), float(min(float(self.high), high))
        return Param(self.name, self.kind, low=low, high=high, log=self.log)

    def contains(self, value: Any) -> bool:
        """Whether a value lies in this parameter's range or among its choices."""
        if self.kind == "choice":
            return value in self.choices
        return float(self.low) <= float(value) <= float(self.high)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "low": self.low, "high": self.high,
                "log": self.log, "choices": list(self.choices), "token": self.token()}


@dataclass(frozen=True)
class Space:
    """The varied hyperparameters of a study, in the order given."""

    params: tuple[Param, ...]

    def __iter__(self):
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def get(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise SpaceError(f"'{name}' is not varied in this study; varied: {', '.join(self.names)}.")

    def distributions(self) -> dict[str, Any]:
        return {p.name: p.distribution() for p in self.params}

    def tokens(self) -> list[str]:
        return [p.token() for p in self.params]


# ------------------------------------------------------------------- parsing
def parse_vary(tokens: Iterable[str], recipe_cls: type | None = None,
               fixed: Iterable[str] = ()) -> Space:
    """Parse `--vary` tokens into a Space, checked against the recipe's fields when given.

    `fixed` names hyperparameters pinned with --fix; varying one of them too is an error.
    """
    params: list[Param] = []
    seen: dict[str, str] = {}
    fixed = set(fixed)
    for token in tokens:
        param = parse_param(token, recipe_cls)
        if param.name in seen:
            raise SpaceError(
                f"'{param.name}' is varied twice ('{seen[param.name]}' and '{token}'); keep one token per name."
            )
        if param.name in fixed:
            raise SpaceError(
                f"'{param.name}' is both varied ('{token}') and fixed (fixed: {param.name}=...); drop one of them."
            )
        seen[param.name] = token
        params.append(param)
    if not params:
        raise SpaceError(f"Nothing to vary: give at least one vary token, {_SYNTAX}.")
    return Space(tuple(params))


def parse_param(token: str, recipe_cls: type | None = None) -> Param:
    """One `--vary` token -> Param (see the module docstring for the syntax)."""
    name, sep, body = token.partition("=")
    name, body = name.strip(), body.strip()
    if not sep or not name:
        raise SpaceError(f"Cannot read vary token '{token}': write {_SYNTAX}.")
    if not name.isidentifier():
        raise SpaceError(f"'{name}' in vary token '{token}' is not a hyperparameter name; write {_SYNTAX}.")
    if not body:
        raise SpaceError(f"vary token '{token}' has nothing after '='; write {_SYNTAX}.")
    field_type = _field_type(recipe_cls, name, token)

    if ".." in body:
        return _parse_range(token, name, body, field_type)
    if "," in body:
        return _parse_choices(token, name, body, field_type, recipe_cls)
    raise SpaceError(
        f"vary token '{token}' gives a single value; a varied hyperparameter needs a range "
        f"({name}=LOW..HIGH) or several choices ({name}=A,B). To pin it, fix it instead ({name}={body})."
    )


def _parse_range(token: str, name: str, body: str, field_type: Any) -> Param:
    spec, _, opts_text = body.partition(":")
    opts = [o.strip().lower() for o in opts_text.split(",")] if opts_text else []
    for opt in opts:
        if opt not in _OPTIONS:
            raise SpaceError(
                f"Unknown option '{opt}' in vary token '{token}'; the options are "
                f"{' and '.join(_OPTIONS)}, e.g. {name}=1e-5..1e-1:log or {name}=16..256:log,int."
            )
    parts = spec.split("..")
    if len(parts) != 2 or "," in spec:
        raise SpaceError(
            f"Cannot read the range in vary token '{token}': write LOW..HIGH with two numbers, "
            f"e.g. {name}=1e-5..1e-1 (a list of choices has no '..': {name}=1,2,4)."
        )
    low, high = (_number(token, p.strip()) for p in parts)
    is_int = "int" in opts or field_type is int
    if field_type is not None and field_type not in (int, float):
        raise SpaceError(
            f"'{name}' is a {_type_name(field_type)} hyperparameter, so '{token}' cannot be a range; "
            f"list its choices instead, e.g. {name}=A,B."
        )
    if field_type is float and "int" in opts:
        raise SpaceError(f"'{name}' is a float hyperparameter; drop ':int' from '{token}'.")
    if is_int:
        if not (float(low).is_integer() and float(high).is_integer()):
            raise SpaceError(
                f"'{name}' takes integers but '{token}' has a fractional bound; write e.g. "
                f"{name}={math.floor(low)}..{math.ceil(high)}."
            )
        low, high = int(low), int(high)
    if not low < high:
        raise SpaceError(f"The range in '{token}' is empty or reversed ({low} is not below {high}); "
                         f"write {name}=LOW..HIGH with LOW < HIGH.")
    log = "log" in opts
    if log and low <= 0:
        raise SpaceError(
            f"A log range must be above 0, but '{token}' starts at {low}; start it at a small positive "
            f"value (e.g. {name}={1 if is_int else 1e-6}..{_fmt(high)}:log) or drop ':log'."
        )
    if not all(math.isfinite(float(v)) for v in (low, high)):
        raise SpaceError(f"The bounds of '{token}' must be finite numbers.")
    return Param(name, "int" if is_int else "float", low=low if is_int else float(low),
                 high=high if is_int else float(high), log=log)


def _parse_choices(token: str, name: str, body: str, field_type: Any, recipe_cls: type | None) -> Param:
    if ":" in body and field_type is not str:
        raise SpaceError(f"Options like ':log' apply to ranges only; '{token}' is a list of choices. Write {name}=A,B,C.")
    texts = [t.strip() for t in body.split(",")]
    if any(not t for t in texts):
        raise SpaceError(f"vary token '{token}' has an empty choice (two commas or a trailing comma); write {name}=A,B,C.")
    if len(set(texts)) != len(texts):
        raise SpaceError(f"vary token '{token}' lists a choice twice; list each choice once.")
    if recipe_cls is not None and field_type is not None:
        from danlu.recipe import _coerce

        values = [_coerce(recipe_cls, name, field_type, t) for t in texts]
    else:
        values = [_guess(t) for t in texts]
    return Param(name, "choice", choices=tuple(values))


def _field_type(recipe_cls: type | None, name: str, token: str) -> Any:
    if recipe_cls is None:
        return None
    fields = recipe_cls.fields()
    if name not in fields:
        raise SpaceError(
            f"vary token '{token}': {recipe_cls.__name__} has no hyperparameter '{name}'. "
            f"Valid fields: {', '.join(sorted(fields))}."
        )
    tp = fields[name]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else tp
    return tp


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _number(token: str, text: str) -> float:
    if not _NUMBER.match(text):
        raise SpaceError(f"'{text}' in vary token '{token}' is not a number; write e.g. 1e-4, 0.1 or 16.")
    return float(text)


def _guess(text: str) -> Any:
    """A choice's value without a recipe to type it: int, float, bool or text."""
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if _NUMBER.match(text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "choice (" + ", ".join(repr(a) for a in typing.get_args(tp)) + ")"
    return getattr(tp, "__name__", str(tp))
