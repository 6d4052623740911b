"""Shared fixtures: a fresh store per test, the tiny recipe, nothing written outside tmp_path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

# Tiny models run fastest on one thread, and one thread per test process keeps the suite
# steady on a 2-core machine with subprocess tests running beside it.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS / "recipes"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own DANLU_HOME, so no test touches ./.danlu."""
    monkeypatch.setenv("DANLU_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    from danlu.console import console, err_console

    console.width = err_console.width = 200  # tables unfolded, so tests can read them
    yield


@pytest.fixture
def store(tmp_path):
    from danlu.store import open_store

    return open_store(tmp_path / "store")


@pytest.fixture
def tiny_path() -> Path:
    return TESTS / "recipes" / "tiny.py"


@pytest.fixture
def digits_path() -> Path:
    return ROOT / "examples" / "digits.py"
