"""Crash safety and scale-out (issue 7): resume after a killed study, --workers N equal to a
sequential run, exploit mode, a PostgreSQL storage joined by a worker, Ray tasks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from danlu.tuning.executors import LocalProcesses, RayExecutor, Sequential
from danlu.tuning.spec import StudySpec
from danlu.tuning.storage import load_optuna_study, local_storage_url, open_storage
from danlu.tuning.study import Study, new_study

RUNNER = """
import sys
from danlu.store import open_store
from danlu.tuning.study import new_study
from danlu.tuning.executors import Sequential
store = open_store(sys.argv[1])
study = new_study(store, sys.argv[2], ["a=0..1"], fixed={"delay": "0.15", "epochs": "2"}, trials=4,
                  name="killme", prune="none")
study.run(Sequential())
"""


def _stage(store, name, stage=0, url=None):
    spec = StudySpec.from_dict(store.get_run(name).config)
    storage = open_storage(url or spec.storage or local_storage_url(store.root))
    return sorted(load_optuna_study(storage, name, stage).get_trials(deepcopy=False), key=lambda t: t.number)


def _summary(trials):
    return [(t.number, t.state.name, t.params, t.value, t.user_attrs.get("steps")) for t in trials]


@pytest.mark.slow
def test_resume_after_a_killed_study_requeues_the_running_trial(store, synth_path, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(store.root), str(synth_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = Path(local_storage_url(store.root)[len("journal:"):])
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # kill it once a trial has finished and the next is mid-way
            time.sleep(0.5)
            if not journal.exists():
                continue
            trials = load_optuna_study(open_storage(local_storage_url(store.root)), "killme", 0).get_trials() \
                if "killme#0" in __import__("optuna").get_all_study_names(open_storage(local_storage_url(store.root))) else []
            states = [t.state for t in trials]
            running = [t for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get("run_id")]
            if TrialState.COMPLETE in states and running:
                break
        else:
            pytest.fail("the study never reached its second trial")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = [t.number for t in _stage(store, "killme") if t.state == TrialState.RUNNING]
    assert killed and store.get_run("killme").status == "crashed"

    study = Study.resume(store, "killme")
    report = study.run(Sequential())
    trials = _stage(store, "killme")
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for number in killed:
        dead = trials[number]
        assert dead.state == TrialState.FAIL and dead.user_attrs["outcome"] == "crashed"
        again = [t for t in trials if t.user_attrs.get("requeue_of") == number]
        assert len(again) == 1 and again[0].state == TrialState.COMPLETE and again[0].params == dead.params
    points = {t.user_attrs["point"] for t in trials if t.state == TrialState.COMPLETE}
    assert points == {0, 1, 2, 3}  # every point done once, none lost, none doubled
    assert store.get_run("killme").status == "finished"
    assert report.finding("T2").evidence["crashed"] == len(killed)
    assert not [r for r in store.list_runs(tags=["study:killme"]) if r.status == "running"]


@pytest.mark.slow
def test_workers_give_the_same_trials_as_a_sequential_run(tmp_path, synth_path):
    from danlu.store import open_store

    results = []
    for workers, executor in ((1, Sequential()), (2, LocalProcesses())):
        store = open_store(tmp_path / f"store{workers}")
        study = new_study(store, str(synth_path), ["a=0..1", "b=0..1"], trials=10, name="same", prune="asha", mode="explore",
                          min_resource=2, seed=3)
        study.run(executor, workers)
        results.append(_summary(_stage(store, "same")))
    assert results[0] == results[1]
    assert any(state == "PRUNED" for _, state, *_ in results[0])  # pruning decisions included


@pytest.mark.slow
def test_workers_run_the_same_rounds_of_exploration_as_a_sequential_run(tmp_path, synth_path):
    """Tune mode's rounds (danlu.tuning.halving) with 2 worker processes: the workers wait between
    rounds while the coordinator queues the next one; the rounds are those of a sequential run."""
    from danlu.store import open_store

    results = []
    for workers, executor in ((1, Sequential()), (2, LocalProcesses())):
        store = open_store(tmp_path / f"store{workers}")
        study = new_study(store, str(synth_path), ["a=0..1", "b=0..1"], fixed={"epochs": "3"}, trials=10,
                          name="rounds", min_resource=2, seed=3)
        study.run(executor, workers)
        trials = _stage(store, "rounds")
        results.append(sorted((t.user_attrs["round"], t.user_attrs["point"], t.state.name, t.params, t.value,
                               t.user_attrs["steps"]) for t in trials if "round" in t.user_attrs))
        assert [t for t in trials if t.user_attrs.get("phase") == "exploit"]
    assert results[0] == results[1]
    assert [sum(1 for r in results[0] if r[0] == k) for k in range(3)] == [8, 3, 1]


@pytest.mark.slow
def test_exploit_narrows_the_exploration_and_seeds_tpe(store, synth_path):
    explore = new_study(store, str(synth_path), ["a=0..1", "b=0..1"], trials=8, name="wide", prune="none")
    explore.run(Sequential())
    exploit = new_study(store, str(synth_path), [], trials=3, name="narrow", mode="exploit", prune="none")
    spec = exploit.spec
    assert spec.source == "wide" and spec.seeded_trials
    a = exploit.spec.space().get("a")
    assert 0.0 < a.high - a.low < 1.0  # narrowed around the good trials
    exploit.run(Sequential())
    trials = _stage(store, "narrow")
    own = [t for t in trials if "seeded_from" not in t.user_attrs]
    seeded = [t for t in trials if "seeded_from" in t.user_attrs]
    assert len(own) == 3 and seeded
    assert all(a.low <= t.params["a"] <= a.high for t in own)


POSTGRES = os.environ.get("DANLU_TEST_POSTGRES_URL")


def _run_beside(study, worker: subprocess.Popen) -> str:
    """Run the study here while `worker` (another "machine") joins it; the worker's output."""
    try:
        study.run(Sequential())
        out, _ = worker.communicate(timeout=240)
    finally:
        if worker.poll() is None:
            worker.kill()
    return out


@pytest.mark.slow
@pytest.mark.skipif(not POSTGRES, reason="DANLU_TEST_POSTGRES_URL is unset: start PostgreSQL with "
                    "`.ci/start-postgres.sh` and export the URL it prints")
def test_postgres_storage_is_joined_by_a_worker(tmp_path, synth_path):
    import optuna

    from danlu.store import open_store

    name = f"pg{os.getpid()}{int(time.time())}"
    store = open_store(tmp_path / "coordinator")
    study = new_study(store, str(synth_path), ["a=0..1"], fixed={"gate": str(tmp_path / "gate")}, trials=6,
                      name=name, prune="none", storage=POSTGRES)
    # a second "machine": a worker with its own store joins through the database
    worker = subprocess.Popen([sys.executable, "-c", (
        "import sys; from danlu.cli import study as s; import argparse; p = argparse.ArgumentParser();"
        "s.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"),
        "study", "worker", name, "--storage", POSTGRES, "--store", str(tmp_path / "worker"), "--wait", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = _run_beside(study, worker)
    trials = _stage(store, name, url=POSTGRES)
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert worker.returncode == 0, out
    hosts = {t.user_attrs["worker"]["pid"] for t in trials}
    assert len(hosts) == 2, "both the coordinator and the worker ran trials"
    optuna.delete_study(study_name=f"{name}#0", storage=open_storage(POSTGRES))


@pytest.mark.slow
@pytest.mark.skipif(not POSTGRES, reason="DANLU_TEST_POSTGRES_URL is unset: start PostgreSQL with "
                    "`.ci/start-postgres.sh` and export the URL it prints")
def test_a_team_store_on_postgres_holds_every_workers_trials(tmp_path, synth_path):
    """Issue 15: with the danlu store itself on PostgreSQL, a worker on "another machine" (its
    own artefact folder, no --storage) joins through the store URL and writes its trial runs
    into the same store, so the coordinator's `danlu runs` and dashboard see every trial."""
    import optuna

    from danlu.store import open_store

    schema = f"team{os.getpid()}{int(time.time())}"
    shared = tmp_path / "shared"          # the artefact root every machine mounts
    url = f"{POSTGRES}?schema={schema}&artifacts={shared}"
    store = open_store(url)
    study = new_study(store, str(synth_path), ["a=0..1"], fixed={"gate": str(tmp_path / "gate")}, trials=6,
                      name="team", prune="none")
    assert study.storage_url.startswith("postgresql") and "search_path" in study.storage_url
    worker = subprocess.Popen([sys.executable, "-m", "danlu", "study", "worker", "team", "--store", url,
                               "--wait", "60"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = _run_beside(study, worker)
    assert worker.returncode == 0, out
    trials = store.list_runs(kind="train", tags=["study:team"])
    assert len(trials) == 6 and all(r.status == "finished" for r in trials), [(r.name, r.status) for r in trials]
    assert len({r.pid for r in trials}) == 2, "both the coordinator and the worker wrote trial runs"
    assert all(store.run_dir(r.id, create=False).is_relative_to(shared) for r in trials)
    assert all(len(store.read_series(r.id, "train/loss")[0]) > 0 for r in trials)
    store.close()
    for stage in optuna.get_all_study_names(open_storage(study.storage_url)):
        optuna.delete_study(study_name=stage, storage=open_storage(study.storage_url))


@pytest.mark.slow
def test_ray_tasks_run_the_study(tmp_path, synth_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'danlu[ray]')")
    from danlu.store import open_store

    store = open_store(tmp_path / "store")
    study = new_study(store, str(synth_path), ["a=0..1"], trials=4, name="rayed", prune="none")
    study.run(RayExecutor("local"), 2)
    trials = _stage(store, "rayed")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) >= 1
    assert len(store.list_runs(tags=["study:rayed"], kind="train")) == 4


ORPHANS = """
import sys
from danlu.store import open_store
from danlu.tuning.study import new_study
from danlu.tuning.executors import LocalProcesses
store = open_store(sys.argv[1])
study = new_study(store, sys.argv[2], ["a=0..1"], fixed={"delay": "0.2", "epochs": "50"}, trials=4,
                  name="orphans", prune="none")
study.run(LocalProcesses(), 2)
"""


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_workers_exit_when_their_coordinator_is_killed(store, synth_path):
    """kill -9 of `danlu study --workers 2` must not leave its worker processes training on (issue 14):
    each stops its trial as Ctrl-C would (resumable) and exits."""
    proc = subprocess.Popen([sys.executable, "-c", ORPHANS, str(store.root), str(synth_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        workers: list[int] = []
        while time.time() < deadline and not workers:
            time.sleep(0.5)
            running = [r for r in store.list_runs(tags=["study:orphans"]) if r.status == "running" and r.kind == "train"]
            if len(running) >= 2:
                workers = [r.pid for r in running]
        assert workers, "the workers never started their trials"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.time() + 20
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.25)
        assert not any(_alive(w) for w in workers), "worker processes outlived their coordinator"
    finally:
        if proc.poll() is None:
            proc.kill()
    stopped = [r for r in store.list_runs(tags=["study:orphans"]) if r.kind == "train"]
    assert stopped and all(r.status in ("stopped", "finished") for r in stopped)
