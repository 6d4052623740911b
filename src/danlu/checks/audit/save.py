"""Keeping an audit: the report and its images go to the store, as a run of kind "audit" or with a run."""

from __future__ import annotations

import time
from pathlib import Path

from danlu.recipe import Recipe
from danlu.report import Report
from danlu.store.base import Store
from danlu.track import attach_report

__all__ = ["save_audit"]


def save_audit(
    store: Store,
    recipe: Recipe,
    report: Report,
    image_root: str | Path | None,
    *,
    run_id: str | None = None,
    command: str = "",
) -> str:
    """Store `report` and copy its images (relative to `image_root`) into the run's folder; return the run id.

    Without run_id a new run of kind "audit" is created (recipe, hyperparameters,
    command; status finished, summary = the audit's status and counts); with run_id the
    audit is attached to that existing run (e.g. the training run whose data it checked).
    """
    if run_id is None:
        record = store.create_run(
            kind="audit",
            recipe=getattr(type(recipe), "__danlu_spec__", None),
            config=recipe.hparams(),
            command=command,
        )
        run_id = record.id
        created = True
    else:
        created = False
    attach_report(store, run_id, report, image_root)
    if created:
        store.update_run(run_id, status="finished", ended=time.time(),
                         summary={"audit": report.status, **{k: v for k, v in report.counts().items() if v}})
    return run_id
