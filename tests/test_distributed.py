"""Several processes, one run (S14, issue 12), on the CPU with gloo as CI runs it: `danlu train --nproc 2`
leaves exactly one run whose weights are those of one process over the same global batches; kill -9 of
one process leaves the run crashed and resumable with the same number of processes (and only that)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from danlu.distributed import Dist, ShardSampler, launch_command
from danlu.recipe import load_recipe
from danlu.step import TrainStep, prepare
from danlu.store import open_store

TESTS = Path(__file__).resolve().parent
TINY = TESTS / "recipes" / "tiny.py"

pytestmark = pytest.mark.slow


def danlu(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "danlu.cli", *argv], capture_output=True, text=True, timeout=timeout)


def test_without_torchrun_everything_is_one_process():
    dist = Dist.from_env()
    assert not dist.active and dist.main and dist.world == 1
    value = torch.tensor(2.0)
    assert dist.mean(value) is value and dist.any(True, torch.device("cpu")) and dist.gather(1) == [1]
    assert list(ShardSampler(7, 1, 3)) == [1, 4] and len(ShardSampler(7, 0, 3)) == 3
    command = launch_command(2, ["train", "r.py"], "python")
    assert command[:3] == ["python", "-m", "torch.distributed.run"] and command[-3:] == ["danlu.cli", "train", "r.py"]


def reference_weights(overrides: list[str], world: int) -> dict[str, torch.Tensor]:
    """One process, stepping on exactly the global batches `world` processes see (DistributedSampler's
    order: a permutation seeded with seed + epoch, rank r taking every world-th index)."""
    recipe = load_recipe(TINY, overrides)
    prep = prepare(recipe, "cpu")
    train, model = prep.train, prep.model
    per_rank = math.ceil(len(train) / world)
    steps_per_epoch = math.ceil(per_rank / recipe.batch_size)
    step = TrainStep.for_recipe(recipe, model, recipe.epochs * steps_per_epoch)
    for epoch in range(recipe.epochs):
        g = torch.Generator()
        g.manual_seed(recipe.seed + epoch)
        order = torch.randperm(len(train), generator=g).tolist()
        order += order[: per_rank * world - len(order)]
        shards = [order[r::world] for r in range(world)]
        for k in range(steps_per_epoch):
            idx = [i for shard in shards for i in shard[k * recipe.batch_size:(k + 1) * recipe.batch_size]]
            x, y = zip(*(train[i] for i in idx))
            step((torch.stack(x), torch.stack(y)))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_two_processes_make_one_run_with_the_weights_of_one_process(tmp_path):
    overrides = ["dropout=0", "epochs=2"]
    proc = danlu("train", str(TINY), *overrides, "--nproc", "2", "--quiet", "--json", "--store", str(tmp_path / "s"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = open_store(tmp_path / "s")
    (run,) = store.list_runs()
    assert run.status == "finished" and run.summary["steps"] == 2 * 3
    repro = store.get_run(run.id).repro
    assert repro["distributed"]["world_size"] == 2 and repro["distributed"]["backend"] == "gloo"
    ddp = torch.load(store.run_dir(run.id) / "checkpoints" / "last.pt", weights_only=False)
    assert ddp["world_size"] == 2
    ref = reference_weights(overrides, world=2)
    assert all(torch.allclose(ddp["model"][k], ref[k], atol=1e-5) for k in ref), \
        max(float((ddp["model"][k] - ref[k]).abs().max()) for k in ref)
    # validation is sharded and gathered: the whole-set loss equals one process evaluating everything
    from danlu.engine import evaluate

    recipe = load_recipe(TINY, overrides)
    model = recipe.model()
    model.load_state_dict(ddp["model"])
    _, val = recipe.data()
    loss, metrics = evaluate(recipe, model, torch.utils.data.DataLoader(val, batch_size=32), torch.device("cpu"))
    assert run.summary["val_loss"] == pytest.approx(loss, rel=1e-5)
    assert run.summary["val_acc"] == pytest.approx(metrics["acc"], rel=1e-6)


SLOW = '''
import time
from tiny import Tiny

class SlowTiny(Tiny):
    delay: float = 0.1
    def forward(self, model, batch):
        time.sleep(self.delay)
        x, y = batch
        return model(x), y
'''


def _ranks(store_root: Path) -> dict[int, int]:
    """pid of each rank of the `danlu train` processes training into this store (from /proc)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            env = dict(item.split(b"=", 1) for item in (entry / "environ").read_bytes().split(b"\0") if b"=" in item)
        except OSError:
            continue
        if b"danlu.cli" in cmd and str(store_root).encode() in cmd and b"RANK" in env and b"LOCAL_RANK" in env:
            out[int(env[b"RANK"])] = int(entry.name)
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the ranks' processes in /proc")
def test_kill_9_of_one_process_leaves_the_run_crashed_and_resumable(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW)
    env = {**os.environ, "PYTHONPATH": f"{TESTS / 'recipes'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    store_root = tmp_path / "s"
    argv = ["train", str(tmp_path / "slow.py"), "dropout=0", "epochs=6", "checkpoint_every=2", "--quiet",
            "--store", str(store_root)]
    proc = subprocess.Popen(launch_command(2, argv, sys.executable), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            time.sleep(0.5)
            if (store_root / "danlu.db").exists():
                runs = open_store(store_root).list_runs()
                if runs and runs[0].summary is not None and \
                        (store_root / "runs" / runs[0].id / "checkpoints" / "last.pt").exists():
                    break
        ranks = _ranks(store_root)
        assert set(ranks) == {0, 1}, ranks
        os.kill(ranks[1], signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = open_store(store_root)
    (run,) = store.list_runs()
    assert run.status == "crashed", (run.status, run.summary)
    # the same number of processes resumes it; another number is refused with the way out
    other = subprocess.run([sys.executable, "-m", "danlu.cli", "train", "--resume", run.id, "--quiet", "--store",
                            str(store_root)], capture_output=True, text=True, env=env, timeout=300)
    assert other.returncode == 2 and "same number of processes (2)" in other.stderr and "--nproc N" in other.stderr
    again = subprocess.run([sys.executable, "-m", "danlu.cli", "train", "--resume", run.id, "--nproc", "2", "--json",
                            "--quiet", "--store", str(store_root)], capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = open_store(store_root).get_run(run.id)
    assert resumed.status == "finished" and resumed.summary["steps"] == 6 * 3
    assert json.loads(again.stdout)["run_id"] == run.id
