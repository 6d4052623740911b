"""A small but complete store for the dashboard tests: runs in every status, curves of
every kind the engine logs (T1), summaries, a diagnosis, a reproducibility record
with a diff (E1), checkpoints, reports, and a run whose name is an XSS attempt."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from danlu.report import Finding, Report, Table

XSS = "<script>alert(1)</script>"
XSS_NOTE = '<img src=x onerror="window.__xss=1">'

DIFF = """diff --git a/examples/digits.py b/examples/digits.py
index 1111111..2222222 100644
--- a/examples/digits.py
+++ b/examples/digits.py
@@ -10,3 +10,3 @@ class Digits(danlu.Recipe):
-    hidden: int = 64
+    hidden: int = 128
     lr: float = 3e-4
"""


@dataclass
class Sample:
    store: object
    ids: dict[str, str] = field(default_factory=dict)   # role -> run id
    report_ids: dict[str, int] = field(default_factory=dict)


def _curves(steps: int, epochs: int, seed: int, lr: float):
    rng = np.random.default_rng(seed)
    s = np.arange(steps)
    train = 2.3 * np.exp(-s / (steps / 3)) + 0.05 + rng.normal(0, 0.05, steps)
    per_epoch = max(1, steps // epochs)
    val_steps = np.arange(per_epoch - 1, steps, per_epoch)
    val = 2.3 * np.exp(-val_steps / (steps / 3)) + 0.1 + 0.01 * seed
    probe_steps = np.arange(0, steps, max(1, steps // 20))
    probe = 2.3 * np.exp(-probe_steps / (steps / 3)) + 0.12
    lrs = lr * 0.5 * (1 + np.cos(math.pi * s / steps))
    acc = 1 - val / 2.5
    return s, train, lrs, val_steps, val, probe_steps, probe, acc


def log_run(store, run_id, steps=300, epochs=5, seed=0, lr=3e-4):
    s, train, lrs, vs, val, ps, probe, acc = _curves(steps, epochs, seed, lr)
    now = time.time()
    pts = [("train/loss", int(a), float(b), now) for a, b in zip(s, train)]
    pts += [("lr", int(a), float(b), now) for a, b in zip(s, lrs)]
    pts += [("val/loss", int(a), float(b), now) for a, b in zip(vs, val)]
    pts += [("val/acc", int(a), float(b), now) for a, b in zip(vs, acc)]
    pts += [("val/probe_loss", int(a), float(b), now) for a, b in zip(ps, probe)]
    store.log_points(run_id, pts)
    return {"best_val_loss": float(val.min()), "best_epoch": int(val.argmin()), "best_val_acc": float(acc.max()),
            "steps": steps}


def populate(store) -> Sample:
    """Four runs (finished x2, running, failed) plus an XSS-named one, with reports."""
    out = Sample(store)
    base = {"seed": 0, "lr": 3e-4, "batch_size": 64, "epochs": 5, "hidden": 64}
    repro = {
        "git": {"commit": "a" * 40, "branch": "main", "dirty": True, "diff": DIFF},
        "command": {"argv": ["danlu", "train", "examples/digits.py"], "line": "danlu train examples/digits.py"},
        "env": {"python": "3.11.7", "torch": "2.13.0", "packages": ["numpy==2.4.6", "torch==2.13.0"]},
        "data": {"train": {"size": 1437, "sha256": "0123abcd"}, "val": {"size": 360, "sha256": "4567ef01"}},
        "seed": 0,
    }
    specs = [
        ("baseline", {}, "finished", "the default recipe", ["baseline"]),
        ("wide", {"hidden": 128, "lr": 1e-3}, "finished", "twice as wide", ["mainline"]),
        ("live", {"lr": 3e-3}, "running", "", []),
        ("broken", {"lr": 1.0}, "failed", "lr far too high", ["exploratory"]),
    ]
    for i, (name, change, status, note, tags) in enumerate(specs):
        config = {**base, **change}
        run = store.create_run(name=name, recipe="/x/examples/digits.py:Digits", config=config, note=note,
                               tags=tags, command="danlu train examples/digits.py")
        summary = log_run(store, run.id, seed=i, lr=config["lr"])
        summary["diagnosis"] = "learning" if status == "finished" else "diverging"
        rec_repro = {**repro, "env": {**repro["env"], "torch": "2.13.0" if i == 0 else "2.12.0"}}
        fields = {"status": status, "summary": summary, "repro": rec_repro}
        if status != "running":
            fields["ended"] = time.time() + 60 * (i + 1)
        else:
            fields["heartbeat"] = time.time()
        store.update_run(run.id, **fields)
        out.ids[name] = run.id
    # artefacts of the baseline: checkpoints and a report image
    folder = store.run_dir(out.ids["baseline"])
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    (folder / "checkpoints" / "best.pt").write_bytes(b"best-checkpoint")
    (folder / "checkpoints" / "last.pt").write_bytes(b"last-checkpoint!")
    (folder / "curves.png").write_bytes(_png())
    check = Report(
        kind="check", title="doctor: digits",
        findings=[
            Finding("S4", "initial loss", "pass", "initial loss 2.31 matches ln(10)=2.30",
                    evidence={"loss": 2.31, "expected": 2.3026}),
            Finding("S2", "overfit one batch", "fail", "loss stayed at 1.9 after 200 steps",
                    evidence={"final_loss": 1.9, "steps": 200}, cause="dropout left on",
                    fix="set dropout to 0 for this check", details="trace line 1\ntrace line 2"),
            Finding("S1", "start small", "warn", f"1.2M parameters {XSS}", evidence={"params": 1_200_000}),
        ],
        tables=[Table("per-class accuracy", ["class", "acc"], [[0, 0.99], [1, 0.95], [XSS, 0.5]])],
        images=["curves.png"],
        meta={"recipe": "digits"},
    )
    out.report_ids["check"] = store.save_report(out.ids["baseline"], "check", check.to_dict())
    diag = Report(kind="diagnosis", title="diagnosis",
                  findings=[Finding("T2", "learning", "pass", "train and val loss both fall")],
                  meta={"regime": "learning"})
    out.report_ids["diagnosis"] = store.save_report(out.ids["baseline"], "diagnosis", diag.to_dict())
    x = store.create_run(name=XSS, config={**base, "hidden": XSS}, note=XSS_NOTE, tags=["x<b>y</b>"])
    store.log_points(x.id, [("train/loss", i, 1.0 / (i + 1), time.time()) for i in range(50)])
    store.update_run(x.id, status="finished", ended=time.time() + 5, summary={"best_val_loss": 0.5})
    out.ids["xss"] = x.id
    return out


def _png() -> bytes:
    import base64

    return base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
