"""Planted bug (S8): hidden layers kept in a plain Python list, invisible to model.parameters().
`registered=true` holds the same layers in an nn.ModuleList (the clean twin)."""

import torch
from _doctor_common import digits_split
from torch import nn

import danlu


class Stack(nn.Module):
    def __init__(self, registered: bool):
        super().__init__()
        self.inp = nn.Linear(64, 64)
        layers = [nn.Linear(64, 64), nn.Linear(64, 64)]
        self.blocks = nn.ModuleList(layers) if registered else layers   # BUG when a plain list
        self.heads = {"digit": nn.Linear(64, 10)}                        # BUG: a plain dict too
        if registered:
            self.heads = nn.ModuleDict(self.heads)

    def forward(self, x):
        h = torch.relu(self.inp(x.flatten(1)))
        for block in self.blocks:
            h = torch.relu(block(h))
        return self.heads["digit"](h)


class PlainListLayers(danlu.Recipe):
    registered: bool = False

    def data(self):
        return digits_split(300, 100)

    def model(self):
        return Stack(self.registered)
