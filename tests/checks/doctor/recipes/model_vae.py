"""Clean, real architecture: a VAE that returns (reconstruction, mu, logvar) and samples by design,
with the usual reconstruction + KL loss; the target is the input itself."""

import torch
import torch.nn.functional as F
from _doctor_common import digits_tensors
from torch import nn
from torch.utils.data import TensorDataset

import danlu


class VAE(nn.Module):
    def __init__(self, d=64, hidden=128, z=8):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(d, hidden), nn.ReLU())
        self.mu, self.logvar = nn.Linear(hidden, z), nn.Linear(hidden, z)
        self.dec = nn.Sequential(nn.Linear(z, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def forward(self, x):
        h = self.enc(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)   # sampled in train and eval: by design
        return self.dec(z), mu, logvar


class DigitsVAE(danlu.Recipe):
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 3

    def data(self):
        x, _ = digits_tensors(600, raw=True)
        x = x.flatten(1) / 16.0
        return TensorDataset(x[150:], x[150:]), TensorDataset(x[:150], x[:150])

    def model(self):
        return VAE()

    def loss(self, output, target):
        recon, mu, logvar = output
        rec = F.binary_cross_entropy_with_logits(recon, target, reduction="sum") / len(target)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(target)
        return rec + kl

    def metrics(self, output, target):
        return {"recon_mse": float(F.mse_loss(torch.sigmoid(output[0]), target))}
