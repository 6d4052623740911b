"""The study report: findings, tables and PNG plots through the shared report model.

Written to the study run (kind "study") so that `danlu study show`, `danlu show` and
the dashboard all read the same Report. Plots are PNG files (danlu.plots)
in the study run's folder; the report lists them relative to that folder.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import danlu.tuning.importance as A
from danlu.errors import error_kind
from danlu.plots import figure, plotting_available, save
from danlu.report import Finding, Report, Table
from danlu.tuning.space import Space

__all__ = ["study_report", "reproduce_command", "trial_rows", "phase_of"]


def reproduce_command(spec, params: dict[str, Any], stage_fraction: float = 1.0, cwd: Path | None = None) -> str:
    """The exact `danlu train` command that trains the trial with these parameters."""
    recipe = spec.recipe
    path, sep, cls = recipe.rpartition(":") if ":" in recipe and not Path(recipe).exists() else (recipe, "", "")
    try:
        rel = os.path.relpath(path, cwd or Path.cwd())
        if not rel.startswith(".."):
            path = rel
    except ValueError:
        pass
    parts = ["danlu", "train", path + (f":{cls}" if sep else "")]
    values = dict(spec.fixed)
    values.update({k: _exact(v) for k, v in params.items()})
    parts += [f"{k}={v}" for k, v in values.items()]
    if spec.stage_on == "steps" and stage_fraction < 1:
        parts += ["--max-steps", str(max(1, int(round(spec.budget_steps * stage_fraction))))]
    return shlex.join(parts)


def _exact(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _steps_in_run(trial) -> int | str:
    """The steps the trial's run holds: a point that went on from a screened trial holds its past too."""
    steps = trial.user_attrs.get("steps")
    return "-" if steps is None else int(steps) + int(trial.user_attrs.get("from_step") or 0)


def trial_rows(stage_trials: Sequence[Sequence[Any]], space: Space) -> tuple[list[str], list[list[Any]]]:
    columns = ["stage", "trial", "outcome", "val loss", "steps", *space.names, "run"]
    rows = []
    for index, trials in enumerate(stage_trials):
        promoted = {t.user_attrs.get("promoted_from") for t in trials}  # rounds of successive halving
        for t in trials:
            if "seeded_from" in t.user_attrs:
                continue
            outcome = "promoted" if t.number in promoted else t.user_attrs.get("outcome") or t.state.name.lower()
            value = t.value if t.value is not None and outcome == "complete" else None
            rows.append([index + 1, t.number, outcome, value if value is not None else "-",
                         _steps_in_run(t), *[t.params.get(n, "-") for n in space.names], t.user_attrs.get("run_name", "-")])
    return columns, rows


def study_report(study, recipe_cls=None) -> Report:
    """Analyse a study from its storage and build its Report (images saved to its folder)."""
    spec = study.spec
    space = spec.space(recipe_cls)
    stages = study.stage_studies()
    stage_trials = [s.get_trials(deepcopy=False) for s in stages]
    # every trial of the first stage, explored or exploited (as Optuna's importance evaluators take
    # them): a tune study explores only a third of its budget evenly, too few points to rank 3+
    # hyperparameters on their own (importance.POINTS_PER_PARAM per hyperparameter)
    first = [t for t in (stage_trials[0] if stage_trials else []) if "seeded_from" not in t.user_attrs]
    findings: list[Finding] = []
    tables: list[Table] = []
    meta: dict[str, Any] = {"study": spec.name, "mode": spec.mode, "spec": spec.to_dict()}

    # --- what to compare, importance, verdict (H1) ---------------------------------
    comp = A.comparable(first, min_complete=max(8, 2 * len(space) + 2))
    values = [p.value for p in comp.points]
    spread = A.relative_spread(values)
    imps = A.importance(comp, space, seed=spec.seed)
    text = A.verdict(imps, spread, len(comp.points))
    findings.append(Finding(
        "H1", "importance", "info" if imps else "skip", text,
        evidence={"basis": comp.describe(), "spread": spread,
                  "importance": {i.name: {"share": i.share, "variance": i.raw, "kruskal_p": i.p} for i in imps}},
        cause="" if imps else "fewer than 3 comparable trials",
        fix="" if imps else "run more trials (--trials) or prune less (--min-resource)",
    ))
    if imps:
        tables.append(Table("importance (fANOVA, share of explained variance)",
                            ["hyperparameter", "share", "variance explained", "matters"],
                            [[i.name, round(i.share, 3), round(i.raw, 3), "yes" if i.matters else "no"] for i in imps]))

    # --- H5: sensitive to everything ------------------------------------------------
    if len(imps) >= 3 and not A.enough_points(len(comp.points), len(imps)):
        findings.append(Finding(
            "H5", "hypersensitivity", "skip",
            f"not judged: {len(comp.points)} comparable trials, {A.POINTS_PER_PARAM * len(imps)} needed for "
            f"{len(imps)} hyperparameters", fix="run more trials (--trials) to check sensitivity to everything"))
    elif A.hypersensitivity(imps, spread, n_points=len(comp.points)):
        findings.append(Finding(
            "H5", "hypersensitivity", "warn",
            f"the objective is sensitive to every varied hyperparameter ({', '.join(i.name for i in imps)})",
            evidence={"spread": spread, "shares": {i.name: i.share for i in imps}},
            cause="a healthy set-up is dominated by one or two hyperparameters; sensitivity to all of them "
                  "usually means a bug (a wrong loss, broken data, a scale that changes everything)",
            fix="run `danlu check` on the recipe before tuning further",
        ))
    elif len(imps) >= 3:
        findings.append(Finding("H5", "hypersensitivity", "pass",
                                f"not sensitive to everything: {sum(i.matters for i in imps)} of {len(imps)} "
                                "hyperparameters matter"))

    # --- H2: best value at the edge of its range ----------------------------------------
    best_point = comp.best
    for edge in A.edges(best_point, space, imps):
        findings.append(Finding(
            "H2", "range edge", "warn" if edge.matters else "info", edge.message(),
            evidence={"name": edge.name, "value": edge.value, "side": edge.side, "range": edge.token},
            cause="the best trial sits where the range was cut off",
            fix=edge.fix(space.get(edge.name)),
        ))
    if best_point is not None and not A.edges(best_point, space, imps):
        findings.append(Finding("H2", "range edge", "pass", "no best value at the edge of its range"))

    # --- H2: scientific hyperparameter isolated --------------------------------------
    images: list[str] = []
    folder = study.store.run_dir(study.run_id)
    if spec.scientific:
        buckets = A.isolation(comp, space.get(spec.scientific))
        tables.append(Table(f"isolation of {spec.scientific} (best trial per bucket, others optimised away)",
                            [spec.scientific, "trials", "best val loss", "best trial"],
                            [[b.label, b.count, b.best if b.best is not None else "-",
                              b.best_number if b.best_number is not None else "-"] for b in buckets]))
        filled = [b for b in buckets if b.best is not None]
        if filled:
            top = min(filled, key=lambda b: b.best)
            findings.append(Finding("H2", "isolation", "info",
                                    f"{spec.scientific}: best at {top.label} ({top.best:.4g}) with the other "
                                    "hyperparameters optimised away",
                                    evidence={"buckets": [b.__dict__ for b in buckets]}))
        images += _plot(folder, "isolation.png", lambda: _plot_isolation(buckets, spec.scientific))

    # --- outcomes: pruned, diverged, NaN, failed (H4, T2) ----------------------------------
    counts = A.outcomes([t for ts in stage_trials for t in ts])
    total = sum(counts.values())
    bad = counts["diverged"] + counts["nan"] + counts["failed"]
    raised = [t for ts in stage_trials for t in ts if t.user_attrs.get("outcome") == "failed"]
    kinds = [error_kind(str(t.user_attrs.get("reason") or "")) for t in raised]
    common = max(set(kinds), key=kinds.count) if kinds else ""
    first = next((t for t, kind in zip(raised, kinds) if kind == common and common), None)
    errored_params = dict(first.params) if first is not None else {}
    when = "before their first step" if not any(int(t.user_attrs.get("steps") or 0) for t in raised) \
        else "in training"
    crashed = (f"{kinds.count(common)} trials raised {when}: {str(first.user_attrs.get('reason'))[:200]}"
               if first is not None and kinds.count(common) * 2 >= counts["failed"] else "")
    frac = bad / total if total else 0.0
    status = "fail" if total and bad == total else "warn" if frac > 0.25 else "pass"
    findings.append(Finding(
        "T2", "diverged / NaN / failed trials", status,
        f"{bad} of {total} trials ({frac:.0%}) diverged, hit NaN or failed "
        f"({counts['diverged']} diverged, {counts['nan']} NaN, {counts['failed']} failed)"
        + (f"; {counts['crashed']} lost to a dead worker were re-run" if counts["crashed"] else ""),
        evidence=counts,
        cause="" if status == "pass" else (crashed or "part of the space trains unstably (often a learning rate "
                                                      "range reaching too high)"),
        fix="" if status == "pass" else (
            f"train one alone to see the traceback: `{reproduce_command(spec, errored_params)}`" if crashed
            else "narrow the range that the failed trials share, or look at one with `danlu show RUN`"),
    ))
    steps_used = sum(int(t.user_attrs.get("steps") or 0) for ts in stage_trials for t in ts)
    if spec.prune != "none":
        budget = sum(int(t.user_attrs.get("total_steps") or 0) for ts in stage_trials for t in ts)
        saved = 1 - steps_used / budget if budget else 0.0
        went_on = sum(1 for ts in stage_trials for t in ts if "promoted_from" in t.user_attrs)
        findings.append(Finding(
            "H4", "pruning", "info",
            f"{counts['pruned']} of {total} trials pruned by {spec.prune} after at least {spec.min_resource} steps"
            + (f" ({went_on} of them went on in the exploration's next round)" if went_on else "")
            + f"; {steps_used} training steps used, {saved:.0%} fewer than running every trial to its end",
            evidence={"pruned": counts["pruned"], "went_on": went_on, "steps": steps_used, "budget": budget,
                      "min_resource": spec.min_resource},
        ))
    if spec.mode == "tune" and stage_trials:
        findings.append(_phases_finding(stage_trials[0], stages[0].user_attrs.get("danlu_stage", {})))
    if len(spec.stages) > 1:
        sizes = [len([t for t in ts if "seeded_from" not in t.user_attrs and t.user_attrs.get("outcome") != "crashed"])
                 for ts in stage_trials]
        findings.append(Finding(
            "H3", "stages", "info",
            " -> ".join(f"{n} trials at {f:g}" for n, f in zip(sizes, spec.stages)) + f", promoting the best {spec.keep:.0%}",
            evidence={"stages": spec.stages, "trials": sizes},
        ))

    # --- best trial and how to reproduce it ------------------------------------------
    best = _best_trial(stage_trials)
    summary: dict[str, Any] = {"trials": total, "complete": counts["complete"], "pruned": counts["pruned"],
                               "failed": bad, "steps": steps_used}
    if best is not None:
        index, t = best
        command = reproduce_command(spec, dict(t.params), spec.stages[index])
        meta.update(best={"stage": index + 1, "trial": t.number, "value": t.value, "params": dict(t.params),
                          "run_id": t.user_attrs.get("run_id"), "run_name": t.user_attrs.get("run_name")},
                    command=command)
        summary.update(best_val_loss=t.value, best_params=dict(t.params), best_run=t.user_attrs.get("run_name"),
                       command=command)
        findings.append(Finding(
            "E3", "best trial", "info",
            f"trial {t.number} (stage {index + 1}, run {t.user_attrs.get('run_name')}): val loss {t.value:.4g} with "
            + ", ".join(f"{k}={A._fmt(v)}" for k, v in t.params.items()),
            evidence=meta["best"], fix=command,
        ))
        if spec.stage_on == "data" and spec.stages[index] < 1:
            findings[-1].summary += f" (trained on {spec.stages[index]:g} of the data)"

    columns, rows = trial_rows(stage_trials, space)
    tables.append(Table("trials", columns, rows))

    # --- plots ------------------------------------------------------------------------
    images += _plot(folder, "axes.png", lambda: _plot_axes(comp, space, best_point))
    images += _plot(folder, "history.png", lambda: _plot_history(stage_trials))
    if imps:
        images += _plot(folder, "importance.png", lambda: _plot_importance(imps))
    meta["summary"] = summary
    meta["basis"] = comp.describe()
    return Report(kind="study", title=f"study {spec.name}: {spec.mode}, {total} trials", findings=findings,
                  tables=tables, images=images, meta=meta)


def phase_of(trial) -> str:
    """'exploit' for the TPE trials a tune stage added after its queue, else 'explore'."""
    return "exploit" if trial.user_attrs.get("phase") == "exploit" else "explore"


def _phases_finding(trials, stage: dict[str, Any]) -> Finding:
    """H2: how much of the step budget exploration and exploitation used, and what each found."""
    from optuna.trial import TrialState

    budget = int(stage.get("step_budget") or 0)
    parts, evidence = [], {"budget": budget}
    for phase in ("explore", "exploit"):
        mine = [t for t in trials if phase_of(t) == phase and "seeded_from" not in t.user_attrs]
        steps = sum(int(t.user_attrs.get("steps") or 0) for t in mine)
        done = [t.value for t in mine if t.state == TrialState.COMPLETE and t.value is not None
                and math.isfinite(t.value)]
        best = min(done) if done else None
        evidence[phase] = {"trials": len(mine), "steps": steps, "best": best}
        share = f"{steps / budget:.0%} of the budget" if budget else f"{steps} steps"
        found = (f"best {best:.4g}" if best is not None else "nothing left to spend" if not mine and budget
                 and evidence["explore"]["steps"] >= budget else "no completed trial")
        parts.append(f"{phase} {len(mine)} trials, {steps} steps ({share}), {found}")
    return Finding("H2", "explore, then exploit", "info", "; ".join(parts) + f" (budget {budget} steps)",
                   evidence=evidence)


def _best_trial(stage_trials) -> tuple[int, Any] | None:
    """The best completed trial of the highest stage that has one (the largest scale)."""
    from optuna.trial import TrialState

    for index in range(len(stage_trials) - 1, -1, -1):
        done = [t for t in stage_trials[index] if t.state == TrialState.COMPLETE and t.value is not None
                and math.isfinite(t.value) and "seeded_from" not in t.user_attrs]
        if done:
            return index, min(done, key=lambda t: (t.value, t.number))
    return None


# -------------------------------------------------------------------- plots
def _plot(folder: Path, name: str, draw) -> list[str]:
    """Draw into folder/name (danlu.plots); a missing matplotlib skips the plot."""
    if not plotting_available():
        return []
    fig = draw()
    if fig is None:
        return []
    save(fig, folder / name)
    return [name]


def _plot_axes(comp: A.Comparable, space: Space, best: A.Point | None):
    if not comp.points:
        return None
    n = len(space)
    fig = figure(3.4 * n, 3.0, dpi=90)
    axes = [fig.add_subplot(1, n, k + 1) for k in range(n)]
    for ax, p in zip(axes, space):
        xs = [pt.params.get(p.name) for pt in comp.points]
        ys = [pt.value for pt in comp.points]
        if p.kind == "choice" and not p.numeric:
            order = {c: i for i, c in enumerate(p.choices)}
            ax.scatter([order.get(x, -1) for x in xs], ys, s=18, alpha=0.8)
            ax.set_xticks(range(len(p.choices)), [str(c) for c in p.choices])
        else:
            ax.scatter(xs, ys, s=18, alpha=0.8)
            if p.log or (p.kind == "choice" and p.numeric and min(p.choices) > 0 and max(p.choices) / min(p.choices) >= 8):
                ax.set_xscale("log")
        if best is not None and p.name in best.params:
            bx = best.params[p.name]
            bx = list(p.choices).index(bx) if p.kind == "choice" and not p.numeric else bx
            edge = p.edge(best.params[p.name])
            ax.scatter([bx], [best.value], s=60, color="red" if edge else "green", marker="*",
                       label="best (at the edge: widen)" if edge else "best")
            ax.legend(fontsize=7)
        ax.set_xlabel(p.name)
        ax.set_ylabel("val loss" if comp.basis == "final" else f"probe loss @ {comp.step}")
    fig.suptitle(f"objective vs each hyperparameter ({comp.describe()})", fontsize=9)
    return fig


def _plot_history(stage_trials):
    fig = figure(5, 3, dpi=90)
    ax = fig.add_subplot(1, 1, 1)
    any_points = False
    for index, trials in enumerate(stage_trials):
        pts = [(t.number, t.value) for t in trials if t.value is not None and math.isfinite(t.value)
               and "seeded_from" not in t.user_attrs and t.user_attrs.get("outcome") == "complete"]
        if pts:
            any_points = True
            xs, ys = zip(*sorted(pts))
            ax.scatter(xs, ys, s=14, label=f"stage {index + 1}")
            best, run = [], math.inf
            for y in ys:
                run = min(run, y)
                best.append(run)
            ax.step(xs, best, where="post", linewidth=1)
    if not any_points:
        return None
    ax.set_xlabel("trial")
    ax.set_ylabel("val loss")
    ax.legend(fontsize=7)
    return fig


def _plot_importance(imps):
    fig = figure(4, 0.5 + 0.4 * len(imps), dpi=90)
    ax = fig.add_subplot(1, 1, 1)
    names = [i.name for i in imps][::-1]
    shares = [i.share for i in imps][::-1]
    ax.barh(names, shares, color=["tab:red" if i.matters else "tab:gray" for i in imps][::-1])
    ax.set_xlabel("share of explained variance (fANOVA)")
    return fig


def _plot_isolation(buckets, name: str):
    fig = figure(5, 3, dpi=90)
    ax = fig.add_subplot(1, 1, 1)
    labels = [b.label for b in buckets]
    values = [b.best if b.best is not None else float("nan") for b in buckets]
    ax.plot(range(len(labels)), values, marker="o")
    ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
    ax.set_xlabel(name)
    ax.set_ylabel("best val loss in bucket")
    ax.set_title(f"isolation of {name}: nuisance hyperparameters optimised away", fontsize=8)
    return fig
