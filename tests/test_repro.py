"""Tests for danlu.repro: seeding (S11), RNG state for resume, the reproducibility record
(E1, E3), code snapshots (E4) and record diffs."""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from danlu import repro
from danlu.recipe import load_recipe_class
from danlu.repro.capture import sha256_file

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


# ------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True)
def _restore_global_state(tmp_path_factory):
    """Undo seed_everything's global switches, sys.path growth and modules loaded from tmp."""
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    path = list(sys.path)
    modules = set(sys.modules)
    yield
    torch.use_deterministic_algorithms(det, warn_only=warn_only)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
    if cublas is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas
    sys.path[:] = path
    temp = tmp_path_factory.getbasetemp().resolve()
    for name in set(sys.modules) - modules:
        file = getattr(sys.modules[name], "__file__", None)
        if file and Path(file).resolve().is_relative_to(temp):
            del sys.modules[name]


@pytest.fixture
def no_parent_repo(tmp_path, monkeypatch):
    """Stop git from finding a repository above tmp_path (e.g. when /tmp is inside one)."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.resolve()))
    return tmp_path


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "init.defaultBranch=main", *args],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout


def draws() -> tuple:
    return (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(),
            torch.randint(0, 1000, (4,)).tolist())


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------ seeding (S11)
def test_seed_everything_repeats_python_numpy_and_torch_draws():
    repro.seed_everything(123)
    first = draws()
    repro.seed_everything(123)
    assert draws() == first
    repro.seed_everything(124)
    assert draws() != first


def test_seed_everything_switches_determinism_on_and_off():
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    repro.seed_everything(0)
    # The global flag is only needed (and only set) where CUDA is: CPU kernels are deterministic.
    assert torch.are_deterministic_algorithms_enabled() == torch.cuda.is_available()
    if torch.cuda.is_available():
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    repro.seed_everything(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic


def test_seed_everything_keeps_a_user_cublas_setting():
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"
    repro.seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


@pytest.mark.parametrize("weights_only", [False, True])
def test_rng_state_round_trips_through_torch_save(tmp_path, weights_only):
    repro.seed_everything(7)
    draws()  # advance every generator away from the seed
    np.random.randn()  # leave a cached gaussian in numpy's state
    loader_gen = torch.Generator().manual_seed(99)
    torch.randperm(10, generator=loader_gen)
    torch.save({"rng": repro.rng_state(generators={"train": loader_gen})}, tmp_path / "ckpt.pt")
    expected = (draws(), np.random.randn(), torch.randperm(10, generator=loader_gen).tolist())

    repro.seed_everything(0)  # scramble everything
    torch.randperm(10, generator=loader_gen)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=weights_only)["rng"]
    repro.set_rng_state(state, generators={"train": loader_gen})
    assert (draws(), np.random.randn(), torch.randperm(10, generator=loader_gen).tolist()) == expected


def test_set_rng_state_names_a_missing_generator():
    state = repro.rng_state()
    with pytest.raises(KeyError, match="no generator named train"):
        repro.set_rng_state(state, generators={"train": torch.Generator()})


# -------------------------------------------------------------- git capture (E1)
@needs_git
def test_capture_in_a_dirty_repo_records_commit_branch_diff_and_untracked(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q")
    recipe = write(root / "recipes" / "tiny.py", "LR = 0.1\n")
    write(root / ".gitignore", "*.log\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    commit = git(root, "rev-parse", "HEAD").strip()

    recipe.write_text("LR = 0.5\n")                               # unstaged change
    write(root / "recipes" / "staged.py", "X = 1\n")
    git(root, "add", "recipes/staged.py")                         # staged new file
    write(root / "recipes" / "helper_mod.py", "def f():\n    return 42")  # untracked, no EOL
    write(root / "train.log", "noise\n")                          # ignored

    record = repro.capture(recipe, argv=["danlu", "train", str(recipe), "note=a b"],
                           hparams={"lr": 0.5}, seed=3)
    json.dumps(record)  # the whole record is JSON-serialisable
    info = record["git"]
    assert info["root"] == str(root.resolve())
    assert info["commit"] == commit and info["branch"] == "main" and info["dirty"] is True
    assert "-LR = 0.1" in info["diff"] and "+LR = 0.5" in info["diff"]
    assert "recipes/staged.py" in info["diff"]
    assert info["untracked"] == ["recipes/helper_mod.py"]
    assert "+++ b/recipes/helper_mod.py" in info["untracked_diff"]
    assert "+    return 42" in info["untracked_diff"]
    assert "train.log" not in json.dumps(info)
    assert record["command"]["line"] == f"danlu train {recipe} 'note=a b'"
    assert record["command"]["cwd"] == os.getcwd()
    assert record["seed"] == 3 and record["hparams"] == {"lr": 0.5}
    assert record["recipe"]["sha256"] and record["recipe"]["name"] == "tiny.py"

    # E3: the commit plus the recorded patches rebuild the work tree exactly.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True, capture_output=True)
    git(clone, "checkout", "-q", info["commit"])
    (tmp_path / "all.patch").write_text(info["diff"] + info["untracked_diff"])
    git(clone, "apply", str(tmp_path / "all.patch"))
    for rel in ("recipes/tiny.py", "recipes/staged.py", "recipes/helper_mod.py"):
        assert (clone / rel).read_bytes() == (root / rel).read_bytes()


@needs_git
def test_capture_in_a_clean_repo_is_not_dirty(tmp_path):
    git(tmp_path, "init", "-q")
    recipe = write(tmp_path / "r.py", "A = 1\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "c")
    info = repro.capture(recipe, argv=[])["git"]
    assert info["dirty"] is False and info["diff"] == "" and info["untracked"] == []


@needs_git
def test_capture_before_the_first_commit_still_records_the_changes(tmp_path):
    git(tmp_path, "init", "-q")
    recipe = write(tmp_path / "r.py", "A = 1\n")
    git(tmp_path, "add", "r.py")
    info = repro.git_info(recipe)
    assert info["commit"] is None and info["dirty"] is True and "+A = 1" in info["diff"]


def test_capture_outside_a_repo_has_no_git(no_parent_repo):
    recipe = write(no_parent_repo / "r.py", "A = 1\n")
    record = repro.capture(recipe, argv=["x"])
    assert record["git"] is None
    assert record["command"]["line"] == "x"


def test_capture_without_git_installed_does_not_crash(tmp_path, monkeypatch):
    recipe = write(tmp_path / "r.py", "A = 1\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert repro.capture(recipe, argv=[])["git"] is None


def test_capture_records_the_environment():
    env = repro.capture(None, argv=[])["env"]
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["torch"] == torch.__version__ and env["cuda"] == torch.version.cuda
    assert env["cpu"] and env["cpu_count"] >= 1
    assert any(p.lower().startswith("torch==") for p in env["packages"])
    assert env["packages"] == sorted(env["packages"], key=str.lower)
    if torch.cuda.is_available():  # pragma: no cover - GPU machines only
        assert env["gpus"] and env["gpus"][0]["name"]
    else:
        assert env["gpus"] == []


def test_the_package_list_is_read_again_once_a_package_is_installed(tmp_path, monkeypatch):
    """E3: the list is kept between runs of one process only while sys.path's folders are unchanged."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = repro.capture(None, argv=[])["env"]["packages"]
    assert repro.capture(None, argv=[])["env"]["packages"] == before
    dist = tmp_path / "danlu_planted_pkg-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: danlu-planted-pkg\nVersion: 1.2.3\n")
    after = repro.capture(None, argv=[])["env"]["packages"]
    assert "danlu-planted-pkg==1.2.3" in after and set(before) < set(after)


def test_package_names_come_from_the_metadata_headers_not_the_description(tmp_path, monkeypatch):
    """E3: the fast header read takes Name and Version from the headers, wherever they stand among
    them, and never from the long description after the first blank line."""
    monkeypatch.syspath_prepend(str(tmp_path))
    one = tmp_path / "danlu_headers-2.0.dist-info"
    one.mkdir()
    (one / "METADATA").write_text("Metadata-Version: 2.1\r\nName: danlu-headers\r\nVersion: 2.0\r\n\r\n"
                                  "Name: not-this\nVersion: 9.9\n")
    two = tmp_path / "danlu_late-0.1.dist-info"
    two.mkdir()
    (two / "METADATA").write_text("Metadata-Version: 2.1\nSummary: version comes last\nName: danlu-late\n"
                                  "Version: 0.1\n")
    packages = repro.capture(None, argv=[])["env"]["packages"]
    assert "danlu-headers==2.0" in packages and "danlu-late==0.1" in packages
    assert not any(p.startswith("not-this") for p in packages)


def test_a_failing_section_is_recorded_not_raised():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            raise OSError("disk gone")

    record = repro.capture(None, train=Broken(), val=None, argv=[])
    assert "disk gone" in record["data"]["error"]
    json.dumps(record)


# ---------------------------------------------------------- data fingerprint
def digits_like(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(1797, 1, 8, 8, generator=gen)
    y = torch.randint(0, 10, (1797,), generator=gen)
    return TensorDataset(x[:1437], y[:1437]), TensorDataset(x[1437:], y[1437:])


def test_data_fingerprint_is_fast_and_stable_for_equal_data():
    train, val = digits_like()
    start = time.perf_counter()
    first = repro.data_fingerprint(train, val)
    assert time.perf_counter() - start < 0.5
    assert first["train"]["size"] == 1437 and first["val"]["size"] == 360
    assert first["train"]["sampled"] == 64 and first["val"]["sampled"] == 64
    again = repro.data_fingerprint(*digits_like())  # equal data, new objects
    assert again == first


def test_data_fingerprint_changes_with_an_item_a_dtype_a_size_or_a_split():
    train, val = digits_like()
    base = repro.data_fingerprint(train, val)

    changed_item = TensorDataset(train.tensors[0].clone(), train.tensors[1])
    changed_item.tensors[0][0, 0, 0, 0] += 1e-3
    assert repro.data_fingerprint(changed_item, val)["train"]["sha256"] != base["train"]["sha256"]

    as_double = TensorDataset(train.tensors[0].double(), train.tensors[1])
    assert repro.data_fingerprint(as_double, val)["sha256"] != base["sha256"]

    shorter = TensorDataset(*(t[:-1] for t in train.tensors))
    assert repro.data_fingerprint(shorter, val)["sha256"] != base["sha256"]

    new_label = TensorDataset(val.tensors[0], val.tensors[1].clone())
    new_label.tensors[1][-1] = (new_label.tensors[1][-1] + 1) % 10
    moved = repro.data_fingerprint(train, new_label)
    assert moved["val"]["sha256"] != base["val"]["sha256"]
    assert moved["train"] == base["train"]


def test_data_fingerprint_hashes_nested_python_and_numpy_items():
    def items(label: str, value: float):
        return [({"text": label, "ids": np.arange(4), "extra": [1, 2.5, None]}, value)
                for _ in range(10)]

    base = repro.data_fingerprint(items("a", 1.0), None)
    assert base == repro.data_fingerprint(items("a", 1.0), None)
    assert base["val"] == {"size": None, "sampled": 0, "sha256": None, "type": None}
    assert repro.data_fingerprint(items("b", 1.0), None)["sha256"] != base["sha256"]
    assert repro.data_fingerprint(items("a", 1.5), None)["sha256"] != base["sha256"]
    # a list and a tuple with the same content are different data
    as_tuple = [(tuple(x.items()), y) for x, y in items("a", 1.0)]
    as_list = [([*x.items()], y) for x, y in items("a", 1.0)]
    assert repro.data_fingerprint(as_tuple, None) != repro.data_fingerprint(as_list, None)


# ------------------------------------------------------------ snapshot (E4)
RECIPE = """\
    import math
    import torch
    import danlu
    import {helper}
    from {pkg} import sub

    class Tiny(danlu.Recipe):
        hidden: int = {helper}.WIDTH + sub.EXTRA

        def data(self):
            return [], []

        def model(self):
            return torch.nn.Linear(1, self.hidden)
"""


def make_project(folder: Path) -> tuple[Path, str, str]:
    """A recipe importing a helper module and a package whose module imports relatively."""
    tag = uuid.uuid4().hex[:8]
    helper, pkg = f"helper_{tag}", f"pkg_{tag}"
    recipe = write(folder / "tiny.py", RECIPE.format(helper=helper, pkg=pkg))
    write(folder / f"{helper}.py", "WIDTH = 8\n")
    write(folder / pkg / "__init__.py", "")
    write(folder / pkg / "sub.py", "from .consts import BASE\nEXTRA = BASE + 1\n")
    write(folder / pkg / "consts.py", "BASE = 1\n")
    write(folder / f"unused_{tag}.py", "X = 1\n")  # local but not imported: not copied
    return recipe, helper, pkg


def test_snapshot_copies_the_recipe_and_its_local_modules_only(no_parent_repo):
    project = no_parent_repo / "proj"
    recipe, helper, pkg = make_project(project)
    cls = load_recipe_class(recipe)  # puts the helpers in sys.modules, as a real run does
    assert cls().hidden == 8 + 2
    __import__(f"unused_{helper[7:]}")  # imported by someone else: still not the recipe's

    dest = no_parent_repo / "snap"
    copied = repro.snapshot_code(recipe, dest)
    assert copied == ["tiny.py", f"{helper}.py", f"{pkg}/__init__.py", f"{pkg}/consts.py",
                      f"{pkg}/sub.py"]
    assert not any(name.startswith(("torch", "danlu", "math", "unused")) for name in copied)
    manifest = json.loads((dest / "MANIFEST.json").read_text())
    assert manifest["recipe"] == "tiny.py" and manifest["base"] == "folder"
    assert set(manifest["files"]) == set(copied)
    assert manifest["files"][f"{helper}.py"] == sha256_file(project / f"{helper}.py")
    assert manifest["modules"][f"{pkg}/sub.py"] == f"{pkg}.sub"


def test_a_snapshot_runs_the_recorded_code_after_the_project_changes(no_parent_repo):
    project = no_parent_repo / "proj"
    recipe, helper, pkg = make_project(project)
    load_recipe_class(recipe)
    dest = no_parent_repo / "snap"
    repro.snapshot_code(recipe, dest)

    (project / f"{helper}.py").write_text("WIDTH = 100\n")  # the code moves on
    (project / pkg / "consts.py").write_text("BASE = 100\n")
    shutil.rmtree(project)  # or disappears entirely
    cls = repro.load_snapshot(dest)
    assert cls().hidden == 10
    assert Path(sys.modules[helper].__file__).resolve().is_relative_to(dest.resolve())
    # the plain loader also works on the copy when helpers sit beside the recipe
    assert load_recipe_class(dest / "tiny.py")().hidden == 10


@needs_git
def test_snapshot_in_a_repo_keeps_paths_relative_to_the_repo_root(tmp_path):
    git(tmp_path, "init", "-q")
    recipe, helper, pkg = make_project(tmp_path / "recipes")
    load_recipe_class(recipe)
    dest = tmp_path / ".danlu" / "runs" / "r1" / "code"
    copied = repro.snapshot_code(recipe, dest)
    assert copied[0] == "recipes/tiny.py"
    assert f"recipes/{helper}.py" in copied and f"recipes/{pkg}/sub.py" in copied
    manifest = json.loads((dest / "MANIFEST.json").read_text())
    assert manifest["base"] == "git" and manifest["sys_path"] == ["recipes"]
    assert repro.load_snapshot(dest)().hidden == 10


def test_snapshot_names_a_missing_recipe(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        repro.snapshot_code(tmp_path / "nope.py", tmp_path / "snap")


def test_diff_snapshots_shows_the_changed_code(no_parent_repo):
    project = no_parent_repo / "proj"
    recipe, helper, _ = make_project(project)
    load_recipe_class(recipe)
    repro.snapshot_code(recipe, no_parent_repo / "a")
    (project / f"{helper}.py").write_text("WIDTH = 16\n")
    repro.snapshot_code(recipe, no_parent_repo / "b")
    delta = repro.diff_snapshots(no_parent_repo / "a", no_parent_repo / "b")
    assert list(delta["changed"]) == [f"{helper}.py"]
    assert "-WIDTH = 8" in delta["changed"][f"{helper}.py"]
    assert "+WIDTH = 16" in delta["changed"][f"{helper}.py"]
    assert delta["added"] == [] and delta["removed"] == []
    assert repro.diff_snapshots(no_parent_repo / "a", no_parent_repo / "a")["changed"] == {}


# ------------------------------------------------------------ run differences
def _run(rid: str, record: dict, config: dict | None = None):
    from danlu.store.base import RunRecord

    return RunRecord(id=rid, name=rid, repro=record, config=dict(config or record.get("hparams") or {}))


def test_differences_are_empty_for_the_same_run():
    from danlu.repro.diff import differences

    train, val = digits_like()
    record = repro.capture(None, train, val, argv=["danlu", "train"], hparams={"lr": 0.1}, seed=0)
    assert differences([_run("a", record), _run("b", copy.deepcopy(record))]) == []


def test_differences_find_hparam_package_python_git_and_data_changes():
    from danlu.repro.diff import differences

    train, val = digits_like()
    a = repro.capture(None, train, val, argv=["danlu", "train"],
                      hparams={"lr": 0.1, "hidden": 8, "old": 1}, seed=0)
    b = copy.deepcopy(a)
    b["hparams"] = {"lr": 0.01, "hidden": 8, "new": True}
    packages = b["env"]["packages"]
    index = next(i for i, p in enumerate(packages) if p.lower().startswith("numpy=="))
    packages[index] = "numpy==0.0.1"
    packages.append("Extra_Pkg==1.0")
    b["env"]["python"] = "3.99.0"
    a["git"] = {"root": "/r", "commit": "aaa", "branch": "main", "dirty": False,
                "diff": "", "untracked": [], "untracked_diff": ""}
    b["git"] = {**a["git"], "commit": "bbb", "dirty": True, "diff": "+x = 1\n",
                "untracked": ["h.py"]}
    b["data"] = repro.data_fingerprint(*digits_like(seed=1))

    rows = {(d.section, d.key): d.values for d in differences([_run("a", a), _run("b", b)])}
    json.dumps([list(k) + [v] for k, v in rows.items()])
    assert rows[("hyperparameters", "lr")] == [0.1, 0.01]
    assert rows[("hyperparameters", "old")] == [1, None] and rows[("hyperparameters", "new")] == [None, True]
    assert ("hyperparameters", "hidden") not in rows
    assert rows[("environment", "env.packages.numpy")] == [np.__version__, "0.0.1"]
    assert rows[("environment", "env.packages.Extra_Pkg")] == [None, "1.0"]
    assert rows[("environment", "env.python")] == [a["env"]["python"], "3.99.0"]
    assert not any(k[1] == "env.torch" for k in rows)
    assert rows[("code", "git.commit")] == ["aaa", "bbb"] and rows[("code", "git.dirty")] == [False, True]
    assert rows[("code", "git.diff")][0] == "" and rows[("code", "git.diff")][1].startswith("1 lines, sha256")
    assert any(k[0] == "data" and k[1].startswith("data.train") for k in rows)
    assert not any(k[1] in ("seed", "command.line") for k in rows)


def test_differences_report_a_run_outside_git_and_a_seed_change():
    from danlu.repro.diff import differences

    rows = {(d.section, d.key): d.values for d in differences([
        _run("a", {"git": None, "seed": 0, "hparams": {}}), _run("b", {"git": {"commit": "c"}, "seed": 1})])}
    assert rows[("code", "git.commit")] == [None, "c"] and rows[("other", "seed")] == [0, 1]


def test_a_study_worker_asks_git_and_the_environment_once(monkeypatch, tmp_path):
    """Inside reusing_sections() the git and environment sections are taken once and copied;
    outside, every capture asks again (a run's record is never shared by accident)."""
    import importlib

    cap = importlib.import_module("danlu.repro.capture")   # the module (danlu.repro.capture is also its function)
    calls = {"git": 0, "env": 0}

    def git(folder):
        calls["git"] += 1
        return {"commit": "abc", "dirty": False}

    def env():
        calls["env"] += 1
        return {"python": "3"}

    monkeypatch.setattr(cap, "git_info", git)
    monkeypatch.setattr(cap, "environment", env)
    recipe = tmp_path / "r.py"
    recipe.write_text("x = 1\n")
    with cap.reusing_sections():
        first = cap.capture(recipe, hparams={"lr": 0.1})
        second = cap.capture(recipe, hparams={"lr": 0.2})
    assert calls == {"git": 1, "env": 1}
    assert first["git"] == second["git"] and first["git"] is not second["git"]
    assert (first["hparams"], second["hparams"]) == ({"lr": 0.1}, {"lr": 0.2})   # per run, as before
    cap.capture(recipe)
    cap.capture(recipe)
    assert calls == {"git": 3, "env": 3}


def test_the_command_line_is_recorded_without_passwords(tmp_path):
    """A store URL on the command line (issue 15) keeps its user and host, never its password."""
    from danlu.repro import capture

    record = capture(None, argv=["danlu", "train", "r.py", "--store", "postgresql://alice:s3cret@db.lab:5432/team"])
    assert "s3cret" not in str(record["command"]) and "postgresql://alice:***@db.lab:5432/team" in record["command"]["line"]
