"""Fixtures for the doctor's tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Timing tests use one intra-op thread: on a loaded 2-core machine two threads spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
