"""Planted bug (S13): a language model whose decoder has 50 outputs for a 60-word vocabulary
(outputs [B, T, 50], targets [B, T] up to 59)."""

from model_lstm_lm import LM, WordLM
from torch import nn


class ShortDecoderLM(WordLM):
    def model(self):
        lm = LM()
        lm.decoder = nn.Linear(64, 50)   # BUG: the vocabulary has 60 words
        return lm
