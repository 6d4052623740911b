"""Clean, real architecture: a VisionTransformer (patch embedding, zero-initialised class token,
learned positions, pre-norm encoder from torch.nn) on 3x16x16 digits."""

import torch
from _doctor_common import digits_rgb_split
from torch import nn

import danlu


class ViT(nn.Module):
    def __init__(self, side=16, patch=4, dim=48, depth=2, heads=4, classes=10, dropout=0.1):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        n = (side // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))                    # zero-initialised, as torchvision does
        self.pos = nn.Parameter(torch.empty(1, n + 1, dim).normal_(std=0.02))
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True,
                                           activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], 1) + self.pos
        return self.head(self.norm(self.encoder(tokens))[:, 0])


class ViTDigits(danlu.Recipe):
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 3

    def data(self):
        return digits_rgb_split()

    def model(self):
        return ViT()
