"""A LightningModule and LightningDataModule written the way Lightning's docs write them:
a small classifier on generated blobs, logging with self.log, Adam with a StepLR stepped
per epoch. `bug=...` plants one of the classic mistakes the doctor must catch."""

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class LitClassifier(pl.LightningModule):
    def __init__(self, lr: float = 1e-2, hidden: int = 32, bug: str = "") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.hparams.bug == "zero_inputs":
            x = torch.zeros_like(x)                        # BUG: the model never sees its input
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        if self.hparams.bug == "detached":
            loss = loss.detach().requires_grad_()          # BUG: the graph is cut, nothing learns
        if self.hparams.bug == "nan":
            loss = loss + torch.log(torch.tensor(-1.0))    # BUG: NaN loss
        self.log("train_loss", loss, prog_bar=True)
        return {"loss": loss}

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 10, 0.5),
                                 "interval": "epoch"}}


class Blobs(pl.LightningDataModule):
    def __init__(self, batch_size: int = 32) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage=None):
        g = torch.Generator().manual_seed(0)
        centres = torch.randn(3, 8, generator=g) * 2
        y = torch.randint(0, 3, (600,), generator=g)
        x = centres[y] + torch.randn(600, 8, generator=g)
        self.train_set, self.val_set = TensorDataset(x[:480], y[:480]), TensorDataset(x[480:], y[480:])

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=64)


def build(bug: str = ""):
    """An entry point returning (module, datamodule)."""
    return LitClassifier(bug=bug), Blobs()


class SelfFed(LitClassifier):
    """A module with its own train_dataloader and no validation loop, optimizers returned as
    ([optimizer], [scheduler]): another of Lightning's documented forms."""

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(256, 8, generator=g)
        return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=32, shuffle=True)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.9)]
