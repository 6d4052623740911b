"""Run a family of checks on a recipe, each isolated, into one Report.

    report = run_checks(recipe)                              # `danlu check`: the doctor
    report = run_checks(recipe, "audit", scan_limit=10_000)  # `danlu audit`: the data
    report = run_checks(recipe, only="S4,S7", settings={"S1.max_params": 5e6})

Checks run in stage order (data -> model -> one step -> short training). A crash
inside a check becomes a failing finding that names the last frame in the user's
files, and the other checks still run. When ``data()`` or ``model()`` itself raises,
the first check that needs it reports the crash and the checks that depend on it are
skipped with that reason. After a *gating* check fails (S13, the data interface),
later crashes are reported as its consequences (skipped) rather than as new bugs.
A crash with no frame in the user's code is danlu's own bug: it is reported as such
(a warning with the traceback), never as a finding about the recipe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from danlu.checks.base import STAGES, Check, CheckResult, DependencyFailed, Family, SkipCheck
from danlu.checks.catalog import configure, select
from danlu.checks.context import Advance, Context
from danlu.device import resolve_device
from danlu.errors import error_kind, error_text, in_user_code, short_traceback, user_frame
from danlu.recipe import Recipe, recipe_name, recipe_spec
from danlu.report import Finding, Report

__all__ = ["run_checks", "run_one", "recipe_settings", "REPORT_KIND"]

#: The report kind each family writes.
REPORT_KIND: dict[Family, str] = {"doctor": "check", "audit": "audit"}


def recipe_settings(recipe: Recipe) -> dict[str, Any]:
    """A recipe's own threshold overrides: ``check_settings = {"S1.max_params": 5_000_000}``."""
    value = getattr(recipe, "check_settings", None) or {}
    return dict(value)


def run_one(check: Check, ctx: Context) -> CheckResult:
    """Run one check; turn skips, missing dependencies and crashes into findings."""
    start = time.perf_counter()
    try:
        out = check.run(ctx)
        result = out if isinstance(out, CheckResult) else CheckResult([out])
    except SkipCheck as exc:
        result = CheckResult([check.finding("skip", f"skipped: {exc}")])
    except DependencyFailed as exc:
        result = CheckResult([_dependency_finding(check, ctx, exc)])
    except Exception as exc:  # a crash in the user's code (or in the check): isolate it
        result = CheckResult([_crash_finding(check, ctx, exc)])
    seconds = round(time.perf_counter() - start, 4)
    for finding in result.findings:
        finding.seconds = seconds
    return result


def _dependency_finding(check: Check, ctx: Context, exc: DependencyFailed) -> Finding:
    reporter = ctx.reported.get(exc.part)
    if reporter is not None:
        return check.finding("skip", f"skipped: {exc.part} failed (see {reporter})")
    ctx.reported[exc.part] = check.id
    where = exc.where.splitlines()[0] if exc.where else ""
    return check.finding(
        "fail",
        f"{exc.part} raised {error_text(exc.error)}" + (f" at {where}" if where else ""),
        evidence={"part": exc.part, "error": error_text(exc.error), "where": exc.where},
        cause=f"the recipe's {exc.part} crashed, so nothing that needs it can be checked",
        fix=f"fix the error in {exc.part} (see the frame above), then run the checks again",
        details=(exc.where + "\n\n" if exc.where else "") + short_traceback(exc.error),
    )


def _crash_finding(check: Check, ctx: Context, exc: BaseException) -> Finding:
    where = user_frame(exc)
    first = where.splitlines()[0] if where else "unknown location"
    evidence = {"error": error_text(exc), "where": where}
    gating = [cid for cid in ctx.failed_checks if cid in ctx.gates]
    if gating:
        return check.finding(
            "skip",
            f"skipped: could not run ({error_text(exc, 120)} at {first}), most likely because "
            f"{', '.join(gating)} failed; fix that first", evidence=evidence)
    if not in_user_code(exc) and _inside_danlu(exc):
        return check.finding(
            "warn", f"could not run: danlu's check crashed ({error_text(exc, 160)})", evidence=evidence,
            cause="a bug in danlu, or data it does not understand; not a finding about your recipe",
            fix="report it with the details below; the other checks ran",
            details=short_traceback(exc))
    return check.finding(
        "fail", f"crashed: {error_text(exc)} at {first}", evidence=evidence,
        cause="the recipe's code raised while this check ran it (a real run would crash the same way)",
        fix=f"fix the error at {first}, then run only {check.id} to retry it",
        details=(where + "\n\n" if where else "") + short_traceback(exc))


def _inside_danlu(exc: BaseException) -> bool:
    """Whether the exception was raised by danlu's own check code (not by a recipe default it ran)."""
    import traceback

    import danlu

    ours = str(Path(danlu.__file__).resolve().parent / "checks")
    frames = traceback.extract_tb(exc.__traceback__)
    return any(str(Path(f.filename).resolve()).startswith(ours) for f in frames[-3:])


def run_checks(
    recipe: Recipe,
    family: Family = "doctor",
    *,
    only: str | Iterable[str] | None = None,
    skip: str | Iterable[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    scan_limit: int | None = None,
    out_dir: str | Path | None = None,
    progress: bool = False,
    on_finding: Callable[[Finding], None] | None = None,
) -> Report:
    """Run the selected checks of `family` on a recipe and return the report.

    ``settings`` overrides thresholds (``{"S4.ratio_warn": 2}``) on top of the recipe's
    ``check_settings``. ``scan_limit`` caps the items read per split (the audit reads
    every item by default, the doctor a sample of 2,048). ``out_dir`` keeps images
    (paths in the report are relative to it). ``progress`` draws bars on stderr.
    """
    from danlu.errors import DanluError

    if scan_limit is not None and scan_limit < 1:
        raise DanluError(f"scan_limit must be a positive number of samples, got {scan_limit}.")
    merged = {**recipe_settings(recipe), **dict(settings or {})}
    checks = configure(select(family, only, skip), merged)
    started = time.perf_counter()
    findings: list[Finding] = []
    report = Report(kind=REPORT_KIND[family], title=f"{'check' if family == 'doctor' else 'data audit of'} "
                    f"{recipe_name(recipe)}")
    with _Progress(enabled=progress, total=len(checks)) as bar:
        limit = scan_limit if scan_limit is not None else (None if family == "audit" else DOCTOR_SCAN_LIMIT)
        ctx = Context(recipe, resolve_device(device), scan_limit=limit, near_duplicates=family == "audit",
                      out_dir=out_dir, progress=bar.part)
        ctx.gates = {c.id for c in checks if c.gates}
        for check in checks:
            bar.start(check)
            result = run_one(check, ctx)
            if any(f.status == "fail" for f in result.findings):
                ctx.failed_checks.append(check.id)
            findings.extend(result.findings)
            report.tables.extend(result.tables)
            report.images.extend(result.images)
            report.files.extend(result.files)
            for finding in result.findings:
                if on_finding is not None:
                    on_finding(finding)
            bar.advance()
    report.findings = findings
    report.meta = _meta(recipe, ctx, checks, started, limit)
    root = root_cause(findings)
    if root is not None:
        report.meta["root_cause"] = root
    return report


#: When the key check fails, failures of the listed checks most likely follow from it (a batch mix-up
#: fails S10 and then the overfitting and input-dependence checks; NaN breaks every check that trains).
EXPLAINS: dict[str, tuple[str, ...]] = {
    "S13": ("D4", "D7", "S1", "S4", "S5", "S6", "S7", "S8", "S10", "S2", "S3", "S11", "S12"),
    "D6": ("D1", "D2", "D3", "D4", "D5", "D8"),
    "S9": ("S4", "S8", "S2", "S3", "S5", "S11"),
    "S7": ("S4", "S2", "S3", "S5"),
    "S8": ("S2", "S3", "S5"),
    "S10": ("S2", "S3", "S5"),
    "S6": ("S2", "S3", "S5", "S11"),
    "D4": ("S4", "S8", "S2", "S3"),
    "S4": ("S2", "S3"),
    "S5": ("S2", "S3"),
}


def root_cause(findings: list[Finding]) -> dict[str, Any] | None:
    """The check most other problems follow from, when several: {"id", "name", "status", "follows"}.

    When several checks crashed with the same error in the recipe's code, the first of them is the
    root and the others follow ("crash": True). Else candidates are the failing and warning checks;
    each one explains the problems EXPLAINS
    lists for it (vanishing gradients, a warning, explain an overfit that fails). The root
    is the one that explains the most (ties: the earlier in EXPLAINS), and only when it
    explains at least one other; its consequences are marked in their evidence
    ("follows_from") so every view can say "probably follows from S10".
    """
    failing = [f for f in findings if f.status in ("fail", "warn")]
    ids = list(dict.fromkeys(f.id for f in failing))
    if len(ids) < 2:
        return None
    crashes: dict[str, list[Finding]] = {}
    for f in failing:           # the recipe's code raising the same error in several checks is the cause
        if f.status == "fail" and f.summary.startswith("crashed:") and f.evidence.get("error"):
            crashes.setdefault(error_kind(str(f.evidence["error"])), []).append(f)
    same = max(crashes.values(), key=len, default=[])
    if len(same) > 1:
        head, rest = same[0], list(dict.fromkeys(f.id for f in same[1:] if f.id != same[0].id))
        for f in same[1:]:
            f.evidence["follows_from"], f.evidence["same_error"] = head.id, True
        return {"id": head.id, "name": head.name, "status": head.status, "follows": rest, "crash": True}
    order = list(EXPLAINS)
    best, best_follow = None, []
    for cid in sorted(ids, key=lambda c: order.index(c) if c in order else len(order)):
        follow = [other for other in ids if other != cid and other in EXPLAINS.get(cid, ())]
        if len(follow) > len(best_follow):
            best, best_follow = cid, follow
    if best is None:
        return None
    for f in failing:
        if f.id in best_follow:
            f.evidence["follows_from"] = best
    head = next(f for f in failing if f.id == best)
    return {"id": best, "name": head.name, "status": head.status, "follows": best_follow}


#: The doctor reads at most this many items per split for the checks that scan the data (D4).
DOCTOR_SCAN_LIMIT = 2048


def _meta(recipe: Recipe, ctx: Context, checks: list[Check], started: float, limit: int | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "recipe": recipe_spec(recipe),
        "recipe_class": recipe_name(recipe),
        "hparams": recipe.hparams(),
        "device": str(ctx.device),
        "seconds": round(time.perf_counter() - started, 3),
        "checks": [c.id for c in checks],
        "settings": {f"{c.id}.{k}": v for c in checks for k, v in c.current_settings().items()},
        "torch": torch.__version__,
        "task": recipe.task,
        "limit": limit,
    }
    classes = ctx.built("classes")
    if classes is not None:
        meta["num_classes"], meta["num_classes_from"] = classes[0], classes[1]
    scans = ctx.built("scan")
    if scans is not None:
        meta["sizes"] = {name: {"size": s.size, "audited": s.n, "seconds": round(s.seconds, 4)}
                         for name, s in scans.items()}
    datasets = ctx.built("data()")
    if datasets is not None:  # the data version the checks saw (E1), for the stored record
        try:
            from danlu.repro import data_fingerprint

            meta["data"] = data_fingerprint(*datasets)
        except Exception as exc:  # pragma: no cover - a fingerprint must not lose the report
            meta["data"] = {"error": error_text(exc)}
    return meta


class _Progress:
    """Progress on stderr: the check being run, and bars for its long parts (no-op when off).

    On a terminal a rich display; where stderr is not one (a CI log, a pipe, a notebook) a
    redrawn bar would pile up as garbage or show nothing until the end, so it prints a plain
    line when each check starts and, for a long part, one every PLAIN_EVERY seconds."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self.progress: Any = None
        self.task: Any = None
        self.plain = False
        self.started = 0
        self._parts: list[Any] = []

    def __enter__(self) -> _Progress:
        from danlu.console import err_console

        if self.enabled and (not err_console.is_terminal or err_console.is_jupyter):
            self.plain = True
        elif self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24),
                                     MofNCompleteColumn(), TimeElapsedColumn(), console=err_console,
                                     transient=True)
            self.progress.start()
            self.task = self.progress.add_task("", total=self.total)
        return self

    def _say(self, text: str) -> None:
        from danlu.console import err_console

        err_console.print(text, markup=False, highlight=False, soft_wrap=True)

    def start(self, check: Check) -> None:
        self.started += 1
        stage = f"{STAGES.index(check.stage) + 1}/{len(STAGES)} {check.stage}"
        if self.plain:
            self._say(f"check {self.started}/{self.total} ({stage}): {check.id} {check.name}")
        if self.progress is not None:
            for part in self._parts:
                self.progress.remove_task(part)
            self._parts.clear()
            self.progress.update(self.task, description=f"[dim]{stage}[/]  {check.id} {check.name}")

    def part(self, description: str, total: int) -> Advance:
        if self.plain:
            return self._plain_part(description, max(total, 1))
        if self.progress is None:
            return lambda n: None
        task = self.progress.add_task(f"  {description}", total=max(total, 1))
        self._parts.append(task)
        return lambda n: self.progress.advance(task, n)

    def _plain_part(self, description: str, total: int) -> Advance:
        from danlu.progress import PLAIN_EVERY

        state = {"done": 0, "last": time.perf_counter()}

        def advance(n: int) -> None:
            state["done"] += n
            now = time.perf_counter()
            if now - state["last"] >= PLAIN_EVERY:
                state["last"] = now
                self._say(f"  {description}: {state['done']}/{total}")

        return advance

    def advance(self) -> None:
        if self.progress is not None:
            self.progress.advance(self.task)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()
