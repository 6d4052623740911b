"""Planted bugs (S2, S3, S5) in the slow, healthy language model of model_word_lm.py, so the
checks that must stay quiet on it are shown to fire on the same model with a bug:

- bug="misaligned": each target window belongs to another input window (the windows of y
  were shuffled apart from those of x, a misaligned join): a batch can still be memorised,
  but nothing held out can be learned (S5);
- bug="blind": the forward feeds the LSTM a placeholder of zeros left from a shape test
  instead of the tokens: the input never reaches the output, only the position does
  (S2, S3, S5).
"""

import torch
from model_word_lm import WordLM


class BuggyWordLM(WordLM):
    bug: str = "misaligned"

    def data(self):
        train, val = super().data()
        if self.bug != "misaligned":
            return train, val
        (x, y), (vx, vy) = train.tensors, val.tensors
        g = torch.Generator().manual_seed(1)
        # BUG: targets re-ordered without their inputs
        return (type(train)(x, y[torch.randperm(len(y), generator=g)]),
                type(val)(vx, vy[torch.randperm(len(vy), generator=g)]))

    def forward(self, model, batch):
        if self.bug != "blind":
            return super().forward(model, batch)
        x, y = batch
        src = x.t().contiguous()
        log_probs, _ = model(torch.zeros_like(src), model.init_hidden(x.size(0)))   # BUG: meant src
        return log_probs, y.t().contiguous().view(-1)
