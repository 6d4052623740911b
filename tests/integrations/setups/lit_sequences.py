"""Lightning's own language-model demos (lightning.pytorch.demos: code danlu did not write), fed
token blocks shaped like WikiText2's (inputs, inputs shifted by one) that are generated here,
since nothing is downloaded. The LSTM keeps its hidden state from batch to batch and reads
contiguous chunks through the demo's SequenceSampler: a healthy set-up the doctor must leave quiet."""

import lightning.pytorch as pl
import torch
from lightning.pytorch.demos.lstm import LightningLSTM, SequenceSampler, SimpleLSTM
from torch.utils.data import DataLoader, Dataset

VOCAB = 50


class Tokens(Dataset):
    """A token stream whose next token mostly follows from the current one, in blocks of 35."""

    def __init__(self, n_tokens: int, seed: int, block_size: int = 35) -> None:
        g = torch.Generator().manual_seed(seed)
        noise, rand = torch.rand(n_tokens, generator=g), torch.randint(0, VOCAB, (n_tokens,), generator=g)
        ids = [0]
        for i in range(1, n_tokens):
            ids.append(int(rand[i]) if noise[i] < 0.1 else (ids[-1] * 7 + 3) % VOCAB)
        self.data, self.block_size = torch.tensor(ids), block_size

    def __len__(self):
        return len(self.data) // self.block_size - 1

    def __getitem__(self, index):
        start = index * self.block_size
        return self.data[start:start + self.block_size], self.data[start + 1:start + self.block_size + 1]


class SequencedTokens(pl.LightningDataModule):
    def setup(self, stage=None):
        self.train_set, self.val_set = Tokens(20000, seed=0), Tokens(4000, seed=1)

    def train_dataloader(self):   # as the LSTM demo reads WikiText2: 20 contiguous chunks per batch
        return DataLoader(self.train_set, batch_sampler=SequenceSampler(self.train_set, batch_size=20))

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=20)


def small_lstm():
    """LightningLSTM as Lightning wrote it, with a smaller SimpleLSTM inside (CPU budget)."""
    module = LightningLSTM(vocab_size=VOCAB)
    module.model = SimpleLSTM(vocab_size=VOCAB, ninp=32, nhid=32, nlayers=2)
    return module
