"""Clean, real architecture: a small transformer encoder for sequence classification (token and position
embeddings, torch.nn.TransformerEncoder, mean pooling) on token sequences."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import danlu

VOCAB, LENGTH = 30, 16


def token_task(n: int, seed: int):
    """Class = which of tokens 3, 5, 7 appears most often (ties go to the first)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, VOCAB, (n, LENGTH), generator=g)
    counts = torch.stack([(x == t).sum(1) for t in (3, 5, 7)], 1)
    return x, counts.argmax(1)


class Encoder(nn.Module):
    def __init__(self, dim=32, heads=4, depth=2, classes=3):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, dim)
        self.pos = nn.Embedding(LENGTH, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, 0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        h = self.tok(x) + self.pos(torch.arange(x.shape[1], device=x.device))
        return self.head(self.encoder(h).mean(1))


class TokenClassifier(danlu.Recipe):
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 3

    def data(self):
        x, y = token_task(800, 0)
        return TensorDataset(x[200:], y[200:]), TensorDataset(x[:200], y[:200])

    def model(self):
        return Encoder()
