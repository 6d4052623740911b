"""D4: normalisation statistics, and inputs far from mean 0 / std 1 (shown by check and audit)."""

from __future__ import annotations

import math

import numpy as np

from danlu.checks.audit.scan import Moments
from danlu.checks.base import Check, CheckResult, SkipCheck, register
from danlu.checks.context import Context
from danlu.report import Table

__all__ = ["Normalisation", "normalize_snippet"]

_CONSTANT = 1e-8
#: A snippet longer than this goes to a file (a 64-number tensor literal helps no one in a terminal).
_PASTE_WIDTH = 140
#: A feature whose mean sits within this fraction of its range from its minimum or maximum is nearly
#: always one value (a border pixel, a rare flag): standardising it would blow its rare values up, so
#: its scale is not judged.
_SPARSE_SHARE = 0.05
#: How the statistics broadcast against one item, per layout of the moments.
_VIEW = {"channel": ".view(-1, 1, 1)", "sequence_channel": ".view(-1, 1)", "feature": ""}


def _sparse(m: Moments) -> np.ndarray:
    if m.mins is None or m.maxs is None:
        return np.zeros(len(m.s1), dtype=bool)
    spread = m.maxs - m.mins
    near_edge = np.minimum(m.mean - m.mins, m.maxs - m.mean) / np.where(spread > 0, spread, 1.0)
    return (m.std >= _CONSTANT) & (spread > 0) & (near_edge < _SPARSE_SHARE)


def normalize_snippet(m: Moments) -> str:
    """The line to paste: transforms.Normalize for images, (x - mean) / std for feature vectors and
    (steps, features) sequences, per row for (channels, steps) sequences."""
    mean = "[" + ", ".join(_num(v) for v in m.mean) + "]"
    std = "[" + ", ".join(f"{v:.4g}" if v >= _CONSTANT else "1" for v in m.std) + "]"  # constant: 1
    if m.layout == "channel":
        return f"transforms.Normalize(mean={mean}, std={std})"
    view = _VIEW[m.layout]
    return f"x = (x - torch.tensor({mean}){view}) / torch.tensor({std}){view}"


@register
class Normalisation(Check):
    """Input scale: per-channel (images) or per-feature (vectors) mean and std near 0 and 1.

    Detects: inputs far from zero mean and unit variance, such as raw 0-255 pixels,
    unstandardised tabular features (ages, prices, counts) or inputs scaled to tiny
    values; feature scales that differ by orders of magnitude; constant features; and
    validation inputs on another scale than training (normalised in one split only).
    Why: practice D4. Badly scaled inputs saturate activations, blow up the initial loss
    (S4) and force the learning rate down; a validation split on another scale makes
    every validation number wrong. Standardising with the training statistics is the
    cheapest fix in deep learning.
    How: running sums per channel (dim 1 of [C, H, W] items), per feature, or for
    sequences per feature along the shorter axis ((T, F) or (C, T) items), over the
    finite training and validation items the scan read: every item for `danlu audit`,
    a seeded sample of 2,048 per split for `danlu check`. Token and category ids
    (integer sequences) have no scale and are skipped.
    Thresholds: warn when a channel or feature has |mean| > D4.mean_far (3), std >
    D4.std_far (5) or a (non-constant) std < D4.std_tiny (0.01); when feature stds
    differ more than D4.scale_ratio (100) times; when validation is shifted by more than
    D4.shift (0.5) training standard deviations or its std is outside x0.5..x2 (in
    images any channel, in feature vectors at least 10% of the features); with few
    validation items (n) the limits widen to the chance spread, 4/sqrt(n) standard
    deviations and a std ratio of exp(4/sqrt(2(n-1))), so 3 validation items do not warn. Features that
    are nearly always one value (their mean lies within 5% of their range from its edge:
    border pixels, rare flags) are counted but not judged on scale: standardising them
    would blow their rare values up.
    Fix: normalise both splits with the training statistics: paste the printed
    `transforms.Normalize(...)` / `(x - mean) / std` (divide 0-255 pixels by 255 first);
    when there are too many values for one line, they are saved with the report as
    normalisation.pt with the line that loads them.
    Cannot see: scale problems inside the model (S8's activations); per-position scale
    (a bright border is averaged into its channel); token and category ids (skipped);
    the main input only, when items hold several tensors; shifts in the shape of a
    distribution that keep its mean and std.
    """

    id = "D4"
    name = "normalisation"
    families = ("audit", "doctor")
    stage = "data"
    settings = ("mean_far", "std_far", "std_tiny", "scale_ratio", "shift")
    mean_far = 3.0
    std_far = 5.0
    std_tiny = 0.01
    scale_ratio = 100.0
    shift = 0.5

    def run(self, ctx: Context) -> CheckResult:
        train = ctx.scans["train"]
        m = train.moments
        if m is None or not m.count.sum():
            kind = train.kind or "unknown"
            what = "token or category ids" if kind == "tokens" else kind
            raise SkipCheck(f"inputs are {what}, which have no per-channel/feature scale to check")
        out = CheckResult()
        mean, std = m.mean, m.std
        constant = std < _CONSTANT
        sparse = _sparse(m) & ~constant      # mostly one value with rare excursions (border pixels, flags)
        varying = ~constant & ~sparse        # the features whose scale the network sees
        unit = _unit(m)
        problems: list[str] = []
        far = np.flatnonzero((np.abs(mean) > self.mean_far) | (std > self.std_far)
                             | (varying & (std < self.std_tiny)))
        if len(far):
            k = int(far[np.argmax(np.abs(mean[far]) + std[far])])
            problems.append(f"{len(far)} {unit}(s) far from mean 0 / std 1 (e.g. {unit} {k}: mean {mean[k]:.4g}, "
                            f"std {std[k]:.4g}; values {m.lo:.4g}..{m.hi:.4g})")
        ratio = float(std[varying].max() / std[varying].min()) if varying.sum() > 1 else 1.0
        if m.layout == "feature" and ratio > self.scale_ratio:
            problems.append(f"feature scales differ {ratio:.0f}x (std {std[varying].min():.3g}..{std[varying].max():.3g})")
        shift = self._shift(ctx, m, varying)
        if shift:
            problems.append(shift)

        snippet = normalize_snippet(m)
        evidence = {
            "layout": m.layout,
            "mean": mean.tolist(),
            "std": std.tolist(),
            "min": m.lo,
            "max": m.hi,
            "constant": np.flatnonzero(constant).tolist(),
            "sparse": np.flatnonzero(sparse).tolist(),
            "std_ratio": ratio,
            "samples": train.n,
        }
        if len(mean) <= 16:
            out.tables.append(Table(
                f"D4 per-{unit} statistics (train)" + train.sample_note(), [unit, "mean", "std"],
                [[k, round(float(a), 6), round(float(b), 6)] for k, (a, b) in enumerate(zip(mean, std))],
            ))
        paste = self._paste(ctx, m, snippet, out, evidence)
        overall = (f"mean {_num(mean[0])}, std {_num(std[0])}" if len(mean) == 1
                   else f"means {_num(mean.min())}..{_num(mean.max())}, stds {_num(std.min())}..{_num(std.max())}")
        summary = f"train {unit}s: {overall}"
        if constant.any():
            summary += f"; {int(constant.sum())} constant {unit}(s)"
        if sparse.any():
            summary += f"; {int(sparse.sum())} nearly always one value"
        if problems:
            raw_pixels = m.layout == "channel" and m.lo >= 0 and m.hi > 20
            cause = ("Inputs look like raw 0-255 pixel values" if raw_pixels
                     else "Inputs are not standardised: their scale is far from mean 0 / std 1")
            out.findings.append(self.finding(
                "warn", summary + "; " + "; ".join(problems), evidence=evidence,
                cause=cause + ", which saturates activations and puts the initial loss off (S4); a validation "
                      "split on another scale makes its numbers meaningless.",
                fix=f"Normalise with the training statistics, in both splits: {paste}",
            ))
        else:
            out.findings.append(self.finding(
                "pass",
                summary + ("; already normalised" if _standardised(mean[varying], std[varying]) else "")
                + f"; to paste: {paste}",
                evidence=evidence,
            ))
        return out

    @staticmethod
    def _paste(ctx: Context, m: Moments, snippet: str, out: CheckResult, evidence: dict) -> str:
        """The line to paste when it fits one line; else the statistics saved as a file, and how to load them."""
        if len(snippet) <= _PASTE_WIDTH:
            evidence["snippet"] = snippet
            return snippet
        where = ctx.image_path("normalisation.pt")
        if where is None:
            return f"x = (x - mean) / std with the {len(m.mean)} values in this finding's evidence (mean, std)"
        import torch

        path, rel = where
        std = np.where(m.std >= _CONSTANT, m.std, 1.0)
        torch.save({"mean": torch.tensor(m.mean, dtype=torch.float32), "std": torch.tensor(std, dtype=torch.float32),
                    "layout": m.layout}, path)
        out.files.append(rel)
        evidence["file"] = rel
        shape = _VIEW[m.layout]
        return (f"the {len(m.mean)} means and stds are saved as {rel} in the run's folder; "
                f"s = torch.load(PATH); x = (x - s['mean']{shape}) / s['std']{shape}")

    def _shift(self, ctx: Context, m: Moments, varying: np.ndarray) -> str:
        v = ctx.scans["val"].moments
        if v is None or v.layout != m.layout or len(v.s1) != len(m.s1) or not v.count.sum():
            return ""
        sd = np.maximum(m.std, _CONSTANT)
        ok = varying
        delta = np.abs(v.mean - m.mean) / sd
        ratio = np.maximum(v.std, _CONSTANT) / sd
        # a few validation items have a mean and std of their own by chance: the thresholds widen to
        # 4 standard errors (counting items, as values within an item are not independent)
        items = max(2, int(ctx.scans["val"].n))
        mean_limit = max(self.shift, 4 / math.sqrt(items))
        log_limit = max(math.log(2), 4 / math.sqrt(2 * (items - 1)))
        shifted = ok & ((delta > mean_limit) | (np.abs(np.log(ratio)) > log_limit))
        need = 1 if _unit(m) == "channel" else max(1, int(0.1 * ok.sum()))
        if shifted.sum() < need:
            return ""
        k = int(np.flatnonzero(shifted)[np.argmax(delta[shifted])])
        return (f"validation is on another scale than training in {int(shifted.sum())} of {len(sd)} "
                f"{_unit(m)}s (e.g. #{k}: val mean {v.mean[k]:.4g} / "
                f"std {v.std[k]:.4g} vs train {m.mean[k]:.4g} / {m.std[k]:.4g})")


def _unit(m: Moments) -> str:
    return "feature" if m.layout == "feature" else "channel"


def _standardised(mean: np.ndarray, std: np.ndarray) -> bool:
    """Means near 0 and stds near 1 (what Normalize with the training statistics gives)."""
    return bool(len(mean)) and bool(np.all(np.abs(mean) < 0.1)) and bool(np.all((std > 0.5) & (std < 2)))


def _num(v: float) -> str:
    """4 significant digits; float noise around zero (|v| < 5e-5) prints as 0."""
    return "0" if abs(v) < 5e-5 else f"{v:.4g}"
