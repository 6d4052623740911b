"""S14 multi-device training (issue 12): planted bugs that only bite with several processes make it fail,
a clean recipe passes, and it skips unless asked (`danlu check --nproc 2`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from danlu.cli import main

TESTS = Path(__file__).resolve().parents[2]
TINY = TESTS / "recipes" / "tiny.py"

PLANTED = '''
import torch
from torch import nn
from torch.nn import functional as F
import sys
sys.path.insert(0, {recipes!r})
from tiny import Tiny

class SummedLoss(Tiny):
    dropout: float = 0.0
    def loss(self, output, target):
        return F.cross_entropy(output, target, reduction="sum")     # planted: N processes average sums

class Extra(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
        self.aux_head = nn.Linear(16, 3)                           # planted: never used in forward
    def forward(self, x):
        return self.body(x)

class UnusedLayer(Tiny):
    def model(self):
        return Extra()
'''


def s14(tmp_path, spec: str, capsys) -> dict:
    code = main(["check", spec, "--nproc", "2", "--only", "S14", "--json", "--no-save"])
    report = json.loads(capsys.readouterr().out)
    (finding,) = [f for f in report["findings"] if f["id"] == "S14"]
    finding["exit"] = code
    return finding


@pytest.fixture
def planted(tmp_path) -> Path:
    path = tmp_path / "planted.py"
    path.write_text(PLANTED.format(recipes=str(TESTS / "recipes")))
    return path


def test_s14_skips_unless_asked(capsys):
    assert main(["check", str(TINY), "--only", "S14", "--json", "--no-save"]) == 0
    (finding,) = json.loads(capsys.readouterr().out)["findings"]
    assert finding["status"] == "skip" and "--nproc 2" in finding["summary"]


@pytest.mark.slow
def test_s14_passes_on_a_clean_recipe(tmp_path, capsys):
    f = s14(tmp_path, str(TINY), capsys)
    assert f["status"] == "pass" and f["exit"] == 0, f
    assert f["evidence"]["batches"] == [3, 3] and f["evidence"]["unused"] == []
    assert f["evidence"]["param_diff"] <= 1e-6


@pytest.mark.slow
def test_s14_catches_a_summed_loss(tmp_path, planted, capsys):
    f = s14(tmp_path, f"{planted}:SummedLoss", capsys)
    assert f["status"] == "fail" and f["exit"] == 1
    assert "summed" in f["summary"] and "reduction='mean'" in f["fix"]


@pytest.mark.slow
def test_s14_names_a_layer_without_gradient(tmp_path, planted, capsys):
    f = s14(tmp_path, f"{planted}:UnusedLayer", capsys)
    assert f["status"] == "fail" and "aux_head.weight" in f["summary"] and "find_unused_parameters" in f["fix"]
