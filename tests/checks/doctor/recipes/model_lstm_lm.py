"""Clean, real architecture: a word-level LSTM language model as in PyTorch's examples
(embedding, 2-layer LSTM with dropout, decoder; SGD at lr 20 with gradient clipping 0.25).
Outputs are [B, T, V] with targets [B, T] (the next word)."""

import torch
import torch.nn.functional as F
from _doctor_common import markov_text
from torch import nn
from torch.utils.data import TensorDataset

import danlu

VOCAB, BPTT = 60, 20


class LM(nn.Module):
    def __init__(self, vocab=VOCAB, dim=64, layers=2, dropout=0.2):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, dim)
        self.rnn = nn.LSTM(dim, dim, layers, dropout=dropout, batch_first=True)
        self.decoder = nn.Linear(dim, vocab)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, x):
        out, _ = self.rnn(self.drop(self.encoder(x)))
        return self.decoder(self.drop(out))


class WordLM(danlu.Recipe):
    lr: float = 20.0
    grad_clip: float = 0.25
    batch_size: int = 20
    epochs: int = 3
    schedule = "constant"

    def data(self):
        text = markov_text(20 * BPTT * 30 + 1, VOCAB)
        x = text[:-1].reshape(-1, BPTT)
        y = text[1:].reshape(-1, BPTT)
        return TensorDataset(x[60:], y[60:]), TensorDataset(x[:60], y[:60])

    def model(self):
        return LM()

    def optimizer(self, params):
        return torch.optim.SGD(params, lr=self.lr)

    def loss(self, output, target):
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))
