"""The Hugging Face Trainer (issue 13), with the real transformers package: a 2-layer BERT-style
model built from a config (no download) on generated tokens, tracked into the store by
DanluCallback; a planted learning rate that diverges is stopped through the Trainer's own flag."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from danlu.hf import DanluCallback
from danlu.store import open_store


class Tokens(Dataset):
    """Sequences of 12 tokens from a vocabulary of 40; the label is whether token 7 occurs."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 40, (n, 12), generator=g)
        self.labels = (self.ids == 7).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long), "labels": self.labels[i]}


def _train(tmp_path, name, lr, **callback):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=40, per_device_train_batch_size=16,
                             learning_rate=lr, logging_steps=1, eval_strategy="steps", eval_steps=10,
                             save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True)
    watcher = DanluCallback(name=name, store=tmp_path / "store", monitor=False, announce=lambda line: None,
                            **callback)
    trainer = Trainer(model=BertForSequenceClassification(config), args=args, train_dataset=Tokens(320, 0),
                      eval_dataset=Tokens(64, 1), callbacks=[watcher])
    trainer.train()
    return trainer, watcher, open_store(tmp_path / "store")


def test_a_trainer_run_is_tracked_with_its_arguments_and_diagnosed(tmp_path):
    trainer, watcher, store = _train(tmp_path, "hf-healthy", 5e-4, stop_on=("diverging", "nan"))
    record = store.get_run("hf-healthy")
    assert record.kind == "train" and record.status == "finished" and "hf" in record.tags
    assert record.config["learning_rate"] == 5e-4 and record.config["model/hidden_size"] == 16
    steps, losses = store.read_series(record.id, "loss")
    assert steps.tolist() == list(range(1, 41))
    assert len(store.read_series(record.id, "eval_loss")[0]) == 4
    assert "learning_rate" in store.series_names(record.id)
    assert watcher.stop_reason is None and record.summary["diagnosis"] not in ("diverging", "nan")
    assert record.summary["best_val_loss"] == pytest.approx(min(store.read_series(record.id, "eval_loss")[1]))
    assert store.list_reports(run_id=record.id, kind="diagnosis")


def test_a_diverging_trainer_is_stopped_through_should_training_stop(tmp_path):
    trainer, watcher, store = _train(tmp_path, "hf-diverging", 5.0, stop_on=("diverging", "nan"))
    assert watcher.stop_reason and trainer.state.global_step < 40
    record = store.get_run("hf-diverging")
    assert record.summary["diagnosis"] in ("diverging", "nan") and record.summary["stop_reason"]
