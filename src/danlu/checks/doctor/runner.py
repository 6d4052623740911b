"""Run the checks in stages (data -> model -> one step -> short training), each isolated.

    report = run_checks(recipe)                       # every check
    report = run_checks(recipe, only="S4,S7")         # a selection
    report = run_checks(recipe, settings={"S1.max_params": 5e6})

A crash inside a check becomes a failing finding that names the last frame in the
user's files, and the other checks still run. When ``data()`` or ``model()`` itself
raises, the first check that needs it reports the crash and the checks that depend
on it are skipped with that reason. After a *gating* check fails (S13, the data
interface), later crashes are reported as its consequences (skipped) rather than as
new bugs.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping

import torch

from danlu.checks.doctor.base import (
    STAGES,
    Check,
    DependencyFailed,
    SkipCheck,
    configure,
    error_text,
    select,
    short_traceback,
    user_frame,
)
from danlu.checks.doctor.context import Context
from danlu.device import resolve_device
from danlu.recipe import Recipe, recipe_source
from danlu.report import Finding, Report

__all__ = ["run_checks", "run_one", "recipe_settings", "save_report"]


def recipe_settings(recipe: Recipe) -> dict[str, Any]:
    """A recipe's own threshold overrides: ``check_settings = {"S1.max_params": 5_000_000}``."""
    value = getattr(recipe, "check_settings", None) or {}
    return dict(value)


def run_one(check: Check, ctx: Context) -> Finding:
    """Run one check; turn skips, missing dependencies and crashes into findings."""
    start = time.perf_counter()
    try:
        finding = check.run(ctx)
    except SkipCheck as exc:
        finding = check.finding("skip", f"skipped: {exc}")
    except DependencyFailed as exc:
        reporter = ctx.reported.get(exc.part)
        if reporter is None:
            ctx.reported[exc.part] = check.id
            where = exc.where.splitlines()[0] if exc.where else ""
            finding = check.finding(
                "fail",
                f"{exc.part} raised {error_text(exc.error)}" + (f" at {where}" if where else ""),
                evidence={"part": exc.part, "error": error_text(exc.error), "where": exc.where},
                cause=f"the recipe's {exc.part} crashed, so nothing that needs it can be checked",
                fix=f"fix the error in {exc.part} (see the frame above), then run `danlu check` again",
                details=(exc.where + "\n\n" if exc.where else "") + short_traceback(exc.error),
            )
        else:
            finding = check.finding("skip", f"skipped: {exc.part} failed (see {reporter})")
    except Exception as exc:  # a crash in the user's code (or in the check): isolate it
        finding = _crash_finding(check, ctx, exc)
    finding.seconds = round(time.perf_counter() - start, 4)
    return finding


def _crash_finding(check: Check, ctx: Context, exc: BaseException) -> Finding:
    where = user_frame(exc)
    first = where.splitlines()[0] if where else "unknown location"
    gating = [cid for cid in ctx.failed_checks if cid in ctx.gates]
    if gating:
        return check.finding(
            "skip",
            f"skipped: could not run ({error_text(exc, 120)} at {first}), most likely because "
            f"{', '.join(gating)} failed; fix that first",
            evidence={"error": error_text(exc), "where": where},
        )
    return check.finding(
        "fail",
        f"crashed: {error_text(exc)} at {first}",
        evidence={"error": error_text(exc), "where": where},
        cause="the recipe's code raised while this check ran it (a real run would crash the same way)",
        fix=f"fix the error at {first}; run `danlu check --only {check.id}` to retry just this check",
        details=(where + "\n\n" if where else "") + short_traceback(exc),
    )


def run_checks(
    recipe: Recipe,
    *,
    only: str | Iterable[str] | None = None,
    skip: str | Iterable[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    on_finding: Callable[[Finding], None] | None = None,
) -> Report:
    """Run the selected checks on a recipe and return the report (kind "check").

    ``settings`` overrides thresholds (``{"S4.ratio_warn": 2}``) on top of the recipe's
    ``check_settings``. ``progress`` draws a progress bar on stderr.
    """
    merged = {**recipe_settings(recipe), **dict(settings or {})}
    classes = select(only, skip)
    checks = configure(classes, merged)
    ctx = Context(recipe, resolve_device(device))
    ctx.gates = {c.id for c in checks if c.gates}
    started = time.perf_counter()
    findings: list[Finding] = []
    with _Progress(enabled=progress, total=len(checks)) as bar:
        for check in checks:
            bar.start(check)
            finding = run_one(check, ctx)
            if finding.status == "fail":
                ctx.failed_checks.append(check.id)
            findings.append(finding)
            if on_finding is not None:
                on_finding(finding)
            bar.advance()
    spec = getattr(type(recipe), "__danlu_spec__", None)
    if spec is None:
        source = recipe_source(recipe)
        spec = f"{source}:{type(recipe).__name__}" if source else type(recipe).__name__
    meta: dict[str, Any] = {
        "recipe": spec,
        "recipe_class": type(recipe).__name__,
        "hparams": recipe.hparams(),
        "device": str(ctx.device),
        "seconds": round(time.perf_counter() - started, 3),
        "checks": [c.id for c in checks],
        "settings": {f"{c.id}.{k}": v for c in checks for k, v in c.current_settings().items()},
        "torch": torch.__version__,
    }
    try:
        meta["task"] = recipe.task
    except Exception:  # pragma: no cover
        pass
    datasets = ctx.built("data()")
    if datasets is not None:  # the data version the checks saw (E1), for the stored record
        try:
            from danlu.repro import data_fingerprint

            meta["data"] = data_fingerprint(*datasets)
        except Exception as exc:  # pragma: no cover - a fingerprint must not lose the report
            meta["data"] = {"error": f"{type(exc).__name__}: {exc}"}
    return Report(kind="check", title=f"check {type(recipe).__name__}", findings=findings, meta=meta)


class _Progress:
    """A rich progress bar on stderr naming the stage and check being run (a no-op when off)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self.progress = None
        self.task = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            from danlu.console import err_console

            self.progress = Progress(
                TextColumn("[bold]check[/]"),
                BarColumn(bar_width=24),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("", total=self.total)
        return self

    def start(self, check: Check) -> None:
        if self.progress is not None:
            stage = f"{STAGES.index(check.stage) + 1}/{len(STAGES)} {check.stage}"
            self.progress.update(self.task, description=f"[dim]{stage}[/]  {check.id} {check.name}")

    def advance(self) -> None:
        if self.progress is not None:
            self.progress.advance(self.task)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


# ------------------------------------------------------------------ the store
def save_report(report: Report, recipe: Recipe, store=None, *, name: str | None = None) -> tuple[str, int]:
    """Save a check report as a run of kind "check" (recipe, hyperparameters, repro record).

    Returns (run id, report id). The run's summary holds the report's status and counts,
    so run tables can show it without loading the report.
    """
    import sys

    from danlu.track import open_run

    spec = report.meta.get("recipe")
    run = open_run(store=store, kind="check", name=name, config=recipe.hparams(), recipe=spec,
                   tags=["check"])
    try:
        from danlu.repro import capture

        record = capture(recipe_source(recipe), argv=sys.argv, hparams=recipe.hparams(),
                         seed=getattr(recipe, "seed", None))
        record["data"] = report.meta.get("data")
    except Exception as exc:  # a record must never stop the report from being saved
        record = {"error": f"capture failed: {exc!r}"}
    run.store.update_run(run.id, repro=record)
    report.meta["run_id"] = run.id
    report_id = run.save_report(report)
    run.finish("finished", {"check": report.status, **{k: v for k, v in report.counts().items() if v}})
    return run.id, report_id
