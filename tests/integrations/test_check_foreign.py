"""`danlu check` on set-ups danlu did not write (issue 13): a LightningModule with its
LightningDataModule and a Hugging Face Trainer, with the real packages on the CPU. Their own
training step is what the doctor runs; a healthy set-up passes, planted mistakes are caught,
and the checks that need the output and the target skip and say why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import danlu
from danlu.errors import RecipeError

SETUPS = Path(__file__).parent / "setups"
LIT = SETUPS / "lit_classifier.py"
HF = SETUPS / "hf_trainer.py"


def _cli(*args: str, cwd: Path) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "danlu", "check", *args, "--json", "--no-save"],
                          capture_output=True, text=True, cwd=cwd, timeout=600)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _by_id(report: dict) -> dict[str, dict]:
    return {f["id"]: f for f in report["findings"] if not (f["id"] == "D7" and "shuffl" in f["name"])}


def test_a_healthy_lightning_module_passes_with_its_own_step(tmp_path):
    code, report = _cli(f"{LIT}:LitClassifier", "--datamodule", f"{LIT}:Blobs", cwd=tmp_path)
    found = _by_id(report)
    assert code == 0 and report["status"] != "fail", [(f["id"], f["summary"]) for f in report["findings"]]
    assert report["title"].startswith("check LitClassifier")
    for check in ("S2", "S3", "S5", "S8", "S9", "S11"):
        assert found[check]["status"] == "pass", (check, found[check]["summary"])
    for check in ("S4", "S7", "S10"):          # they compare the output with the target: not available
        assert found[check]["status"] == "skip" and "training_step" in found[check]["summary"]


@pytest.mark.parametrize(("bug", "check"), [("zero_inputs", "S5"), ("detached", "S8"), ("nan", "S9")])
def test_planted_lightning_bugs_are_caught(bug, check):
    from lit_classifier import Blobs, LitClassifier  # noqa: I001 - the setups folder is on sys.path below

    torch.manual_seed(0)
    report = danlu.check(LitClassifier(bug=bug), datamodule=Blobs(), only=[check, "S13"], save=False)
    finding = next(f for f in report.findings if f.id == check)
    assert finding.status == "fail", finding.summary
    torch.manual_seed(0)
    clean = danlu.check(LitClassifier(), datamodule=Blobs(), only=[check], save=False)
    assert clean.findings[0].status == "pass", clean.findings[0].summary


def test_an_entry_point_may_return_module_and_datamodule(tmp_path):
    code, report = _cli(f"{LIT}:build", "bug=detached", "--only", "S8", cwd=tmp_path)
    assert code == 1 and _by_id(report)["S8"]["status"] == "fail"


@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)` before")
def test_an_epoch_scheduler_steps_once_per_epoch_not_per_batch():
    from lit_classifier import Blobs, LitClassifier

    from danlu.integrations.recipes import LightningRecipe
    from danlu.step import TrainStep

    recipe = LightningRecipe(LitClassifier(lr=1e-2), Blobs())
    recipe.data()
    per_epoch = len(recipe.loaders(None, None)[0])             # 480 items / 32 = 15 batches
    step = TrainStep.for_recipe(recipe, recipe.model(), total_steps=1000)
    for _ in range(10 * per_epoch - 1):
        step.scheduler.step()
    assert step.lr == pytest.approx(1e-2)                       # StepLR(10 epochs) has not fired yet
    step.scheduler.step()
    assert step.lr == pytest.approx(5e-3)


def test_manual_optimization_is_refused_with_the_reason():
    from lit_classifier import LitClassifier

    module = LitClassifier()
    module.automatic_optimization = False
    with pytest.raises(RecipeError, match="manual optimization"):
        danlu.check(module, save=False)


def test_a_healthy_hf_trainer_passes_and_a_frozen_model_fails(tmp_path):
    code, report = _cli(f"{HF}:make_trainer", f"output_dir={tmp_path / 'out'}", cwd=tmp_path)
    found = _by_id(report)
    assert code == 0, [(f["id"], f["status"], f["summary"]) for f in report["findings"]]
    # a BERT's query/key weights get tiny gradients at initialisation: not "vanishing"
    assert found["S8"]["status"] == "pass", found["S8"]["summary"]
    for check in ("S2", "S5", "S9", "S11"):     # S5 zeroes the dict batch's input_ids
        assert found[check]["status"] == "pass", (check, found[check]["summary"])
    assert found["S4"]["status"] == "skip" and "compute_loss" in found["S4"]["summary"]
    code, report = _cli(f"{HF}:make_trainer", "bug=frozen", f"output_dir={tmp_path / 'out'}", "--only", "S1,S8",
                        cwd=tmp_path)
    found = _by_id(report)
    assert code == 1 and found["S1"]["status"] == "fail" and found["S8"]["status"] == "skip"


def test_hf_labels_that_do_not_belong_to_their_tokens_fail_s5(tmp_path):
    code, report = _cli(f"{HF}:make_trainer", "bug=shuffled_labels", f"output_dir={tmp_path / 'out'}", "--only", "S5",
                        cwd=tmp_path)
    s5 = _by_id(report)["S5"]
    assert code == 1 and s5["status"] == "fail" and s5["evidence"]["gain"] < 0, s5["summary"]


def test_a_trainer_object_is_checked_from_python(tmp_path):
    from hf_trainer import make_trainer

    report = danlu.check(make_trainer(output_dir=str(tmp_path / "out")), only=["S2"], save=False)
    assert report.findings[0].status == "pass" and report.title.startswith("check BertForSequenceClassification")


@pytest.fixture(autouse=True)
def _setups_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(SETUPS))


def test_a_module_that_feeds_itself_without_validation(tmp_path):
    code, report = _cli(f"{LIT}:SelfFed", "--only", "S13,D7,S2,S8", cwd=tmp_path)
    found = {(f["id"], f["name"]): f for f in report["findings"]}
    assert code == 0
    assert found[("S13", "data interface")]["status"] == "warn" and "validation set is empty" in \
        found[("S13", "data interface")]["summary"]
    assert found[("D7", "validation augmentation")]["status"] == "skip"
    assert found[("S2", "overfit one batch")]["status"] == "pass"


def test_lightnings_own_stateful_lstm_demo_stays_quiet(tmp_path):
    """Lightning's LSTM demo carries its hidden state from batch to batch (reset at epoch end) and
    reads contiguous chunks through its own SequenceSampler. The doctor's checks use several batch
    sizes: each new size starts an epoch for the module, and the batch size is the sampler's (20),
    not a default. It used to crash S5 ("Expected hidden[0] size (2, 49, 32), got [2, 64, 32]")
    and warn that a deliberate order does not shuffle."""
    seqs = SETUPS / "lit_sequences.py"
    code, report = _cli(f"{seqs}:small_lstm", "--datamodule", f"{seqs}:SequencedTokens", cwd=tmp_path)
    loud = [(f["id"], f["name"], f["status"], f["summary"]) for f in report["findings"] if f["status"] in ("warn", "fail")]
    assert code == 0 and loud == []
    assert {f["id"]: f for f in report["findings"]}["S5"]["status"] == "pass"
    assert "batch of 20" in {f["id"]: f for f in report["findings"]}["S12"]["summary"]
