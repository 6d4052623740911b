"""kill -9 during `danlu train`: the store opens, the run shows as crashed, --resume finishes it
and the resumed curve equals an uninterrupted run's exactly (issue 2, CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from danlu.cli import main
from danlu.store import open_store


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted(tmp_path, tiny_path, capsys):
    store_dir = tmp_path / "s"
    args = [str(tiny_path), "epochs=60", "patience=0", "--quiet", "--store", str(store_dir)]
    proc = subprocess.Popen([sys.executable, "-m", "danlu.cli", "train", *args, "--name", "victim"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    ckpt = None
    while time.time() < deadline:
        found = list(store_dir.glob("runs/*/checkpoints/last.pt"))
        if found:
            ckpt = found[0]
            break
        time.sleep(0.05)
    assert ckpt is not None, proc.stderr.read() if proc.poll() is not None else "no checkpoint"
    time.sleep(0.3)  # a few more steps past the checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    store = open_store(store_dir)
    run = store.get_run("victim")
    assert run.status == "crashed"
    steps, _ = store.read_series(run.id, "train/loss")
    assert 0 < len(steps) < 360

    assert main(["train", "--resume", "victim", "--quiet", "--store", str(store_dir)]) == 0
    assert main(["train", *args, "--name", "whole"]) == 0
    a = store.read_series(store.get_run("victim").id, "train/loss")
    b = store.read_series(store.get_run("whole").id, "train/loss")
    assert store.get_run("victim").status == "finished"
    assert np.array_equal(a[0], b[0]), (len(a[0]), len(b[0]), sorted(set(a[0]) ^ set(b[0])))
    assert a[1].tobytes() == b[1].tobytes(), np.nonzero(a[1] != b[1])[0][:10]
