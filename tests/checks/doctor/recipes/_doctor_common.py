"""Shared pieces of the doctor's test recipes: a small digits split and a small CNN.

The recipes import this module by name (a recipe's folder is put on sys.path when it
is loaded); it defines no Recipe subclass, so each recipe file still holds exactly one.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset


@functools.cache
def _digits(n: int):
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.RandomState(0).permutation(len(d.target))[:n]
    x = torch.tensor(d.images[order], dtype=torch.float32).unsqueeze(1)  # N x 1 x 8 x 8, 0..16
    y = torch.tensor(d.target[order], dtype=torch.int64)
    return x, y


def digits_tensors(n: int = 600, raw: bool = False):
    """(x, y): n digits as 1x8x8 float32 (standardised unless raw) and int64 labels."""
    x, y = _digits(n)
    x = x.clone()
    if not raw:
        x = (x - x.mean()) / x.std()
    return x, y.clone()


def digits_split(n: int = 600, val: int = 150, raw: bool = False):
    """Train/val TensorDatasets of the first n shuffled digits (val of them held out)."""
    x, y = digits_tensors(n, raw)
    return TensorDataset(x[val:], y[val:]), TensorDataset(x[:val], y[:val])


def linear_regression_split(n: int = 400, val: int = 100):
    """Train/val TensorDatasets of 8 features and a float target [N] = x0 - x1/2 + small noise."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = x[:, 0] - 0.5 * x[:, 1] + 0.1 * torch.randn(n, generator=g)
    return TensorDataset(x[: n - val], y[: n - val]), TensorDataset(x[n - val:], y[n - val:])


def small_cnn(channels: int = 8, hidden: int = 32, classes: int = 10, dropout: float = 0.0,
              batchnorm: bool = False) -> nn.Sequential:
    """A two-conv CNN for 1x8x8 inputs (optionally with batch-norm and dropout)."""
    c = channels
    layers: list[nn.Module] = [nn.Conv2d(1, c, 3, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(c))
    layers += [nn.ReLU(), nn.Conv2d(c, 2 * c, 3, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(2 * c))
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * c * 16, hidden), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, classes))
    return nn.Sequential(*layers)


def digits_rgb_split(n: int = 600, val: int = 150, side: int = 16):
    """Digits as 3 x side x side images (upsampled, standardised): a small stand-in for photos."""
    x, y = digits_tensors(n)
    x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    return TensorDataset(x[val:], y[val:]), TensorDataset(x[:val], y[:val])


def markov_text(length: int, vocab: int, seed: int = 0) -> torch.Tensor:
    """A token stream from a fixed random Markov chain (each word has 3 likely successors): learnable text."""
    g = torch.Generator().manual_seed(seed)
    successors = torch.randint(0, vocab, (vocab, 3), generator=g)
    out = torch.empty(length, dtype=torch.int64)
    token = 0
    for i in range(length):
        out[i] = token
        token = int(successors[token, int(torch.randint(0, 3, (1,), generator=g))])
    return out


def zipf_text(length: int, vocab: int, seed: int = 0, follow: float = 0.5) -> torch.Tensor:
    """A token stream shaped like real text: word frequencies fall as 1/rank (Zipf), and each word
    is followed by one of its 3 own successors with probability `follow`, else by a word drawn
    from the Zipf unigram. A model first learns the unigram (the loss sits on that plateau for a
    while), then the successors: a slow but healthy learner."""
    g = torch.Generator().manual_seed(seed)
    unigram = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
    successors = torch.multinomial(unigram.expand(vocab, -1), 3, generator=g)
    follows = torch.rand(length, generator=g) < follow
    pick = torch.randint(0, 3, (length,), generator=g)
    drawn = torch.multinomial(unigram, length, replacement=True, generator=g)
    out = torch.empty(length, dtype=torch.int64)
    token = 0
    for i in range(length):
        out[i] = token
        token = int(successors[token, pick[i]]) if follows[i] else int(drawn[i])
    return out
