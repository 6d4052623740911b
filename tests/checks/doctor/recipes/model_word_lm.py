"""Clean, real architecture: the word-level language model of pytorch/examples
(word_language_model/model.py's RNNModel, condensed): sequence-first inputs, forward(input,
hidden) -> (log-probabilities [T*B, V], hidden), NLL loss on targets flattened the same way,
trained with danlu's default optimizer (AdamW, lr 3e-3) on Zipf-shaped text. It sits on the
unigram plateau for hundreds of steps before it learns the successors: a slow, healthy learner.
tuple_output=true hands the model's (log_probs, hidden) to the loss as it is, as many users do."""

import torch.nn.functional as F
from _doctor_common import zipf_text
from torch import nn
from torch.utils.data import TensorDataset

import danlu

VOCAB, BPTT = 200, 16


class RNNModel(nn.Module):
    def __init__(self, ntoken=VOCAB, ninp=32, nhid=32, nlayers=2, dropout=0.2):
        super().__init__()
        self.ntoken, self.nlayers, self.nhid = ntoken, nlayers, nhid
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))


class WordLM(danlu.Recipe):
    lr: float = 3e-3
    batch_size: int = 20
    tuple_output: bool = False
    epochs: int = 2

    def data(self):
        text = zipf_text(BPTT * 2400 + 1, VOCAB)
        x = text[:-1].reshape(-1, BPTT)
        y = text[1:].reshape(-1, BPTT)
        return TensorDataset(x[200:], y[200:]), TensorDataset(x[:200], y[:200])

    def model(self):
        return RNNModel()

    def forward(self, model, batch):
        x, y = batch
        output = model(x.t().contiguous(), model.init_hidden(x.size(0)))   # sequence-first
        return output if self.tuple_output else output[0], y.t().contiguous().view(-1)

    def loss(self, output, target):
        log_probs = output[0] if self.tuple_output else output
        return F.nll_loss(log_probs, target)
