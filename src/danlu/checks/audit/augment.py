"""D7: validation is never augmented; training data is shuffled.

What it detects
    A validation item that changes between two reads of the same index (random
    augmentation applied to validation), and a training loader that does not shuffle
    (SequentialSampler). It also says whether training items are augmented, which the
    other checks need to know (D3, D5).
Why it matters
    An augmented validation set gives noisy, pessimistic numbers that differ between
    evaluations; an unshuffled training set (often sorted by class) gives batches of
    one class and a curve that lies (001, 003).
How it measures
    Reads the first three loaded items of each split twice and compares content hashes;
    inspects the training loader's sampler.
Thresholds
    Any change between reads of a validation item warns; a sequential training sampler warns.
Fix
    Build the validation dataset with deterministic transforms only; pass shuffle=True
    (or a random sampler) to the training DataLoader.
"""

from __future__ import annotations

from torch.utils.data import IterableDataset, SequentialSampler

from danlu.checks.audit.base import AuditContext, Check, CheckResult, register
from danlu.checks.audit.scan import describe_error, varies_between_reads
from danlu.report import Finding

__all__ = ["Augmentation"]


@register
class Augmentation(Check):
    id = "D7"
    name = "augmentation and shuffling"

    def run(self, ctx: AuditContext) -> CheckResult:
        out = CheckResult()
        tr, va = ctx.scans["train"], ctx.scans["val"]
        random_train = varies_between_reads(ctx.train, tr.indices[tr.ok])
        random_val = varies_between_reads(ctx.val, va.indices[va.ok])
        if random_val:
            out.findings.append(Finding(
                self.id, "validation augmentation", "warn",
                "validation items change between two reads of the same index: validation is augmented",
                evidence={"random_val_items": True, "random_train_items": random_train},
                cause="Random transforms are applied in the validation dataset's __getitem__.",
                fix="Give the validation dataset deterministic transforms only (resize, crop centre, normalise).",
            ))
        else:
            out.findings.append(Finding(
                self.id, "validation augmentation", "pass",
                "validation items are deterministic; training items "
                + ("are randomly augmented" if random_train else "are not augmented"),
                evidence={"random_val_items": False, "random_train_items": random_train},
            ))
        if isinstance(ctx.train, IterableDataset):
            return out
        try:
            loader = ctx.recipe.loaders(ctx.train, ctx.val)[0]
        except Exception as exc:
            out.findings.append(Finding(self.id, "shuffling", "skip",
                                        f"the recipe's loaders() failed: {describe_error(exc)}"))
            return out
        sampler = getattr(loader, "sampler", None)
        batch_sampler = getattr(loader, "batch_sampler", None)
        inner = getattr(batch_sampler, "sampler", sampler)
        if isinstance(inner, SequentialSampler):
            out.findings.append(Finding(
                self.id, "shuffling", "warn", "the training loader reads items in order (no shuffling)",
                evidence={"sampler": type(inner).__name__},
                cause="Without shuffling, batches follow the dataset's order (often sorted by class or source).",
                fix="Pass shuffle=True (or a RandomSampler / WeightedRandomSampler) to the training DataLoader.",
            ))
        else:
            out.findings.append(Finding(self.id, "shuffling", "pass",
                                        f"the training loader samples with {type(inner).__name__}",
                                        evidence={"sampler": type(inner).__name__}))
        return out
