"""A Hugging Face Trainer set-up as users write one: a 2-layer BERT-style classifier built
from a config (no download) on generated tokens, a tokenizer-free collator. `make_trainer`
is the entry point `danlu check hf_trainer.py:make_trainer` calls; `bug=...` plants a mistake."""

import torch
from torch.utils.data import Dataset
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments


class Tokens(Dataset):
    """Sequences of 12 tokens from a vocabulary of 40; the label is whether token 7 occurs."""

    def __init__(self, n: int, seed: int, shuffle_labels: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 40, (n, 12), generator=g)
        self.labels = (self.ids == 7).any(dim=1).long()
        if shuffle_labels:
            self.labels = self.labels[torch.randperm(n, generator=g)]

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i].tolist(), "labels": int(self.labels[i])}


def collate(items):
    ids = torch.tensor([it["input_ids"] for it in items])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "labels": torch.tensor([it["labels"] for it in items])}


def make_trainer(lr: float = 1e-3, bug: str = "", output_dir: str = "hf-out"):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=16, num_labels=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(config)
    if bug == "frozen":
        for p in model.parameters():                       # BUG: everything frozen, nothing trains
            p.requires_grad_(False)
    args = TrainingArguments(output_dir=output_dir, learning_rate=lr, per_device_train_batch_size=16,
                             num_train_epochs=3, report_to=[], use_cpu=True, seed=0, save_strategy="no")
    shuffled = bug == "shuffled_labels"                    # BUG: labels no longer belong to their tokens
    return Trainer(model=model, args=args, train_dataset=Tokens(320, 0, shuffled),
                   eval_dataset=Tokens(64, 1, shuffled), data_collator=collate)
