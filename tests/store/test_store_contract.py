"""The contract every Store backend must meet (base.Store's docstring), run against each
backend in conftest.BACKENDS (PRACTICES #3, Optuna's pytest_storages). Also E1/E2:
runs keep their settings, note and tags; E3: any run can be found again by id, prefix,
name or "last"."""

from __future__ import annotations

import math
import os
import re
import socket
import struct
import threading
import time

import numpy as np
import pytest

from danlu.errors import RunNotFound, StoreError
from danlu.store import RUN_STATUSES, Store
from danlu.store.base import HEARTBEAT_STALE_AFTER, check_run_name, make_run_name


def _points(name, values, start=0, wall=1.7e9):
    return [(name, start + i, v, wall + i) for i, v in enumerate(values)]


class TestRuns:
    def test_passwords_in_commands_are_never_stored(self, store: Store):
        secret = "danlu train r.py --store postgresql://alice:s3cret@db.lab/team"
        run = store.create_run(command=secret)
        assert store.get_run(run.id).command == "danlu train r.py --store postgresql://alice:***@db.lab/team"
        store.update_run(run.id, command=secret + " --resume")
        assert "s3cret" not in store.get_run(run.id).command

    def test_create_run_defaults(self, store: Store):
        before = time.time()
        run = store.create_run(config={"lr": 1e-3, "hidden": 64}, note="baseline", tags=["main", "cnn"],
                               recipe="/x/digits.py:Digits", command="danlu train digits.py")
        assert re.fullmatch(r"[0-9a-f]{8}", run.id)
        assert re.fullmatch(r"[a-z]+-[a-z]+-\d\d", run.name)
        assert run.status == "running" and run.kind == "train"
        assert run.pid == os.getpid() and run.host == socket.gethostname()
        assert before <= run.created <= time.time()
        again = store.get_run(run.id)
        assert again.config == {"lr": 1e-3, "hidden": 64}
        assert again.tags == ["cnn", "main"]
        assert (again.note, again.recipe, again.command) == ("baseline", "/x/digits.py:Digits", "danlu train digits.py")
        assert again.status == "running"

    def test_generated_names_are_unique(self, store: Store):
        names = {store.create_run().name for _ in range(50)}
        assert len(names) == 50

    def test_given_name_that_exists_is_refused_naming_it(self, store: Store):
        first = store.create_run(name="baseline")
        with pytest.raises(StoreError, match=r"'baseline' already exists.*" + first.id):
            store.create_run(name="baseline")
        assert [r.name for r in store.list_runs()] == ["baseline"]

    @pytest.mark.parametrize("bad", ["", "   ", "last", "LAST", "a\nb", "x" * 101])
    def test_unusable_names_are_refused(self, store: Store, bad):
        with pytest.raises(StoreError):
            store.create_run(name=bad)

    def test_a_name_equal_to_another_runs_id_is_refused(self, store: Store):
        other = store.create_run()
        with pytest.raises(StoreError, match="id of another run"):
            store.create_run(name=other.id)

    def test_update_run_round_trip(self, store: Store):
        run = store.create_run()
        store.update_run(run.id, status="finished", summary={"best_val_loss": 0.12, "epoch_of_best": 3},
                         repro={"git": {"commit": "abc"}}, note="wider", ended=run.created + 5.0,
                         config={"lr": 0.1}, name="renamed")
        got = store.get_run(run.id)
        assert got.status == "finished" and got.name == "renamed"
        assert got.summary == {"best_val_loss": 0.12, "epoch_of_best": 3}
        assert got.repro == {"git": {"commit": "abc"}} and got.note == "wider" and got.config == {"lr": 0.1}
        assert got.duration == pytest.approx(5.0)

    def test_non_finite_summary_values_stay_strict_json(self, store: Store):
        run = store.create_run()
        store.update_run(run.id, summary={"best_val_loss": float("nan"), "acc": np.float32(0.5)})
        assert store.get_run(run.id).summary == {"best_val_loss": "nan", "acc": 0.5}

    def test_update_run_rejects_unknown_fields_and_statuses(self, store: Store):
        run = store.create_run()
        with pytest.raises(StoreError, match="cannot set colour"):
            store.update_run(run.id, colour="red")
        with pytest.raises(StoreError, match="not one of"):
            store.update_run(run.id, status="exploded")
        with pytest.raises(RunNotFound):
            store.update_run("deadbeef", status="finished")
        assert set(RUN_STATUSES) >= {"running", "finished", "failed", "crashed"}

    def test_renaming_onto_a_taken_name_is_refused(self, store: Store):
        store.create_run(name="a")
        b = store.create_run(name="b")
        with pytest.raises(StoreError, match="already exists"):
            store.update_run(b.id, name="a")
        store.update_run(b.id, name="b")  # its own name is fine

    def test_tags(self, store: Store):
        run = store.create_run(tags=["x"])
        assert store.set_tags(run.id, add=["main", "cnn"]) == ["cnn", "main", "x"]
        assert store.set_tags(run.id, remove=["x", "absent"]) == ["cnn", "main"]
        assert store.set_tags(run.id, add=["main"]) == ["cnn", "main"]
        with pytest.raises(RunNotFound):
            store.set_tags("00000000", add=["a"])

    def test_list_runs_newest_first_and_filters(self, store: Store):
        a = store.create_run(kind="train", recipe="/p/digits.py:Digits", tags=["main"])
        b = store.create_run(kind="init", tags=["main", "wide"])
        c = store.create_run(kind="train", recipe="/p/cifar.py:Cifar")
        store.update_run(c.id, status="finished", repro={"big": "x"})
        assert [r.id for r in store.list_runs()] == [c.id, b.id, a.id]
        assert [r.id for r in store.list_runs(tags=["main"])] == [b.id, a.id]
        assert [r.id for r in store.list_runs(tags=["main", "wide"])] == [b.id]
        assert [r.id for r in store.list_runs(status="finished")] == [c.id]
        assert [r.id for r in store.list_runs(recipe="digits.py")] == [a.id]
        assert [r.id for r in store.list_runs(kind="init")] == [b.id]
        assert [r.id for r in store.list_runs(limit=2)] == [c.id, b.id]
        assert store.list_runs(tags=["nope"]) == []
        listed = store.list_runs(status="finished")[0]
        assert listed.repro == {}  # left out of listings on purpose (speed)
        assert store.list_runs(status="finished", with_repro=True)[0].repro == {"big": "x"}
        assert store.list_runs()[1].tags == ["main", "wide"]

    def test_runs_are_visible_to_a_second_handle(self, make_store, store: Store):
        run = store.create_run(name="shared")
        other = make_store()
        assert other.get_run("shared").id == run.id

    def test_run_dir_under_root(self, store: Store):
        run = store.create_run()
        path = store.run_dir(run.id)
        assert path == store.root / "runs" / run.id and path.is_dir()


class TestGetRun:
    """RUN may be "last", an exact id, an exact name, or a unique id prefix."""

    def test_resolution(self, store: Store):
        a = store.create_run(name="alpha")
        b = store.create_run(name="beta")
        assert store.get_run("last").id == b.id
        assert store.get_run(a.id).id == a.id
        assert store.get_run("alpha").id == a.id
        assert store.get_run(f"  {b.id}  ").id == b.id
        prefix = next(a.id[:n] for n in range(1, 9) if not b.id.startswith(a.id[:n]))
        assert store.get_run(prefix).id == a.id
        assert store.get_run(prefix.upper()).id == a.id

    def test_last_is_the_newest_training_run(self, store: Store):
        # `danlu train ...; danlu audit ...; danlu cases last` must mean the trained run.
        only = store.create_run(name="audit-first", kind="audit")
        assert store.get_run("last").id == only.id  # no training run yet: the newest of any kind
        trained = store.create_run(name="trained", kind="train")
        store.create_run(name="checked", kind="check")
        store.create_run(name="audited", kind="audit")
        assert store.get_run("last").id == trained.id
        own_loop = store.create_run(name="own-loop", kind="init")
        assert store.get_run("last").id == own_loop.id

    def test_exact_name_wins_over_an_id_prefix(self, store: Store):
        a = store.create_run()
        b = store.create_run(name=a.id[:4])
        assert store.get_run(a.id[:4]).id == b.id

    def test_ambiguous_prefix_lists_the_candidates(self, store: Store):
        runs = [store.create_run() for _ in range(40)]  # 40 ids over 16 first digits: a shared one
        by_first: dict[str, list] = {}
        for r in runs:
            by_first.setdefault(r.id[0], []).append(r)
        digit, group = next((d, g) for d, g in by_first.items() if len(g) >= 2)
        with pytest.raises(RunNotFound) as info:
            store.get_run(digit)
        message = str(info.value)
        assert "several run ids" in message
        for r in group[:10]:
            assert r.id in message and r.name in message

    def test_no_match_gives_a_hint(self, store: Store):
        store.create_run()
        with pytest.raises(RunNotFound, match="danlu runs"):
            store.get_run("no-such-run")
        with pytest.raises(RunNotFound, match="danlu runs"):
            store.get_run("zzzz")

    def test_last_in_an_empty_store(self, store: Store):
        with pytest.raises(RunNotFound, match="no runs yet"):
            store.get_run("last")


class TestPoints:
    def test_round_trip_sorted_with_bounds(self, store: Store):
        run = store.create_run()
        store.log_points(run.id, [("loss", 3, 0.3, 1.0), ("loss", 1, 0.1, 1.0), ("loss", 2, 0.2, 1.0),
                                  ("lr", 1, 1e-3, 1.0)])
        steps, values = store.read_series(run.id, "loss")
        assert steps.dtype == np.int64 and values.dtype == np.float64
        assert steps.tolist() == [1, 2, 3] and values.tolist() == [0.1, 0.2, 0.3]
        assert store.read_series(run.id, "loss", start=2)[0].tolist() == [2, 3]
        assert store.read_series(run.id, "loss", end=2)[0].tolist() == [1, 2]
        assert store.read_series(run.id, "loss", start=2, end=2)[1].tolist() == [0.2]
        assert store.series_names(run.id) == ["loss", "lr"]

    def test_relogging_a_step_replaces_it(self, store: Store):
        run = store.create_run()
        store.log_points(run.id, _points("loss", [1.0, 2.0, 3.0]))
        store.log_points(run.id, [("loss", 1, 20.0, 5.0), ("loss", 1, 200.0, 6.0)])  # last one wins
        steps, values = store.read_series(run.id, "loss")
        assert steps.tolist() == [0, 1, 2] and values.tolist() == [1.0, 200.0, 3.0]

    def test_non_finite_and_extreme_values_are_stored_faithfully(self, store: Store):
        run = store.create_run()
        specials = [float("nan"), float("inf"), float("-inf"), 5e-324, 1.7976931348623157e308,
                    0.1 + 0.2, -1e-300, -2.5, 0.0]
        store.log_points(run.id, _points("v", specials))
        _, values = store.read_series(run.id, "v")
        assert math.isnan(values[0])
        got = [struct.pack("<d", v) for v in values[1:]]
        assert got == [struct.pack("<d", v) for v in specials[1:]]  # bit for bit

    def test_negative_zero_keeps_its_sign(self, store: Store):
        run = store.create_run()
        store.log_points(run.id, _points("v", [-0.0, 0.0]))
        assert [math.copysign(1.0, v) for v in store.read_series(run.id, "v")[1]] == [-1.0, 1.0]

    def test_a_resumed_run_rewrites_the_steps_it_redoes(self, store: Store):
        """Writes 0..99 in batches, then "resumes" from step 60 with new values: every
        read, bounded or not, sees the newest value of each step, sorted, once."""
        run = store.create_run()
        for lo in range(0, 100, 10):
            store.log_points(run.id, _points("loss", [float(s) for s in range(lo, lo + 10)], start=lo))
        for lo in range(60, 130, 7):  # batches that straddle the old ones
            store.log_points(run.id, _points("loss", [-float(s) for s in range(lo, min(lo + 7, 130))], start=lo))
        expected = {s: (float(s) if s < 60 else -float(s)) for s in range(130)}
        steps, values = store.read_series(run.id, "loss")
        assert steps.tolist() == list(range(130)) and values.tolist() == [expected[s] for s in range(130)]
        for start, end in [(None, 59), (55, 65), (60, 60), (61, None), (125, 500), (200, None), (-5, 3)]:
            steps, values = store.read_series(run.id, "loss", start, end)
            want = [s for s in range(130) if (start is None or s >= start) and (end is None or s <= end)]
            assert steps.tolist() == want, (start, end)
            assert values.tolist() == [expected[s] for s in want], (start, end)

    def test_many_small_writes_read_back_whole_and_in_order(self, store: Store):
        """A slow loop: one point per write, with rewinds, for several times the number of
        writes after which small pieces are merged; nothing is lost or reordered."""
        run = store.create_run()
        expected: dict[int, float] = {}
        rng = np.random.default_rng(3)
        step = 0
        for i in range(700):
            if i % 150 == 149:
                step -= 40  # a resume rewrites the last 40 steps
            value = float(rng.standard_normal())
            store.log_points(run.id, [("slow", step, value, 1.0 + i), ("other", i, float(i), 1.0)])
            expected[step] = value
            step += 1
        steps, values = store.read_series(run.id, "slow")
        assert steps.tolist() == sorted(expected)
        assert values.tolist() == [expected[s] for s in sorted(expected)]
        assert store.read_series(run.id, "other")[0].tolist() == list(range(700))
        steps, values = store.read_series(run.id, "slow", 100, 140)
        assert steps.tolist() == list(range(100, 141)) and values.tolist() == [expected[s] for s in range(100, 141)]

    def test_read_arrays_are_independent_copies(self, store: Store):
        run = store.create_run()
        store.log_points(run.id, _points("v", [1.0, 2.0]))
        steps, values = store.read_series(run.id, "v")
        values[0] = 99.0  # callers may modify what they get (the dashboard downsamples in place)
        steps[0] = 7
        assert store.read_series(run.id, "v")[1].tolist() == [1.0, 2.0]

    def test_series_are_per_run(self, store: Store):
        a, b = store.create_run(), store.create_run()
        store.log_points(a.id, _points("loss", [1.0]))
        store.log_points(b.id, _points("loss", [2.0, 3.0]))
        assert store.read_series(a.id, "loss")[1].tolist() == [1.0]
        assert store.read_series(b.id, "loss")[1].tolist() == [2.0, 3.0]

    def test_unknown_series_is_empty_and_unknown_run_is_an_error(self, store: Store):
        run = store.create_run()
        steps, values = store.read_series(run.id, "nothing")
        assert steps.shape == (0,) and values.shape == (0,) and steps.dtype == np.int64
        with pytest.raises(RunNotFound):
            store.read_series("ffffffff", "loss")
        with pytest.raises(RunNotFound):
            store.log_points("ffffffff", _points("loss", [1.0]))
        store.log_points(run.id, [])  # nothing to do is fine

    def test_numpy_scalars_and_ints_are_accepted(self, store: Store):
        run = store.create_run()
        store.log_points(run.id, [("x", np.int64(0), np.float32(0.5), 1.0), ("x", 1, 2, 1.0)])
        assert store.read_series(run.id, "x")[1].tolist() == [0.5, 2.0]

    def test_two_threads_share_a_store(self, store: Store):
        run = store.create_run()
        errors: list[BaseException] = []

        def work(name):
            try:
                for k in range(20):
                    store.log_points(run.id, _points(name, [float(k)] * 10, start=10 * k))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(f"s{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for i in range(4):
            assert len(store.read_series(run.id, f"s{i}")[0]) == 200


class TestReports:
    def test_save_list_get(self, store: Store):
        run = store.create_run()
        first = store.save_report(run.id, "doctor", {"findings": [{"id": "S1", "value": float("inf")}]})
        second = store.save_report(run.id, "diagnosis", {"ok": True})
        free = store.save_report(None, "audit", {"rows": 3})
        assert [r.id for r in store.list_reports()] == [free, second, first]
        assert [r.id for r in store.list_reports(run_id=run.id)] == [second, first]
        assert [r.id for r in store.list_reports(kind="doctor")] == [first]
        got = store.get_report(first)
        assert got.run_id == run.id and got.kind == "doctor"
        assert got.data == {"findings": [{"id": "S1", "value": "inf"}]}
        assert store.get_report(free).run_id is None

    def test_missing_report_and_run(self, store: Store):
        with pytest.raises(StoreError, match="no report"):
            store.get_report(12345)
        with pytest.raises(RunNotFound):
            store.save_report("ffffffff", "doctor", {})


class TestCrashDetection:
    """base.is_crashed: stale heartbeat on any host, or a dead pid on this host; persisted."""

    def test_dead_pid_on_this_host_is_crashed_and_persisted(self, make_store, store: Store, dead_pid):
        run = store.create_run()
        store.update_run(run.id, pid=dead_pid)
        got = store.get_run(run.id)
        assert got.status == "crashed"
        assert got.ended == got.heartbeat
        raw = make_store().list_runs(status="crashed")  # another handle sees it persisted
        assert [r.id for r in raw] == [run.id]

    def test_live_run_of_this_process_stays_running(self, store: Store):
        run = store.create_run()
        assert store.get_run(run.id).status == "running"
        assert store.list_runs(status="running")[0].id == run.id

    def test_stale_heartbeat_is_crashed_even_if_the_pid_lives(self, store: Store):
        # our own pid is alive: as if the dead run's pid had been reused
        run = store.create_run()
        store.update_run(run.id, heartbeat=time.time() - HEARTBEAT_STALE_AFTER - 1)
        assert store.get_run(run.id).status == "crashed"

    def test_other_host_judged_by_heartbeat_only(self, store: Store, dead_pid):
        fresh, stale = store.create_run(), store.create_run()
        store.update_run(fresh.id, pid=dead_pid, host="elsewhere")
        store.update_run(stale.id, pid=dead_pid, host="elsewhere",
                         heartbeat=time.time() - HEARTBEAT_STALE_AFTER - 1)
        statuses = {r.id: r.status for r in store.list_runs()}
        assert statuses == {fresh.id: "running", stale.id: "crashed"}

    def test_list_runs_filters_see_detected_crashes(self, store: Store, dead_pid):
        run = store.create_run()
        store.update_run(run.id, pid=dead_pid)
        assert store.list_runs(status="running") == []
        assert [r.id for r in store.list_runs(status="crashed")] == [run.id]

    def test_finished_runs_are_never_judged(self, store: Store, dead_pid):
        run = store.create_run()
        store.update_run(run.id, pid=dead_pid, status="finished", heartbeat=0.0)
        assert store.get_run(run.id).status == "finished"

    def test_a_heartbeat_revives_a_run_wrongly_judged_crashed(self, store: Store):
        run = store.create_run()  # this process: e.g. it was stopped (SIGSTOP) for a minute
        store.update_run(run.id, heartbeat=time.time() - 100)
        assert store.get_run(run.id).status == "crashed"
        store.heartbeat(run.id)
        got = store.get_run(run.id)
        assert got.status == "running" and got.ended is None

    def test_heartbeat_does_not_revive_other_statuses(self, store: Store):
        run = store.create_run()
        store.update_run(run.id, status="finished")
        store.heartbeat(run.id)
        assert store.get_run(run.id).status == "finished"


def test_run_names_helpers():
    assert re.fullmatch(r"[a-z]+-[a-z]+-\d\d", make_run_name())
    assert check_run_name("  my run  ") == "my run"
