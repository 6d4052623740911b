"""D4: normalisation statistics, ready to paste, and inputs far from mean 0 / std 1.

What it detects
    Per-channel (images) or per-feature (vectors) mean and standard deviation of the
    training inputs as the dataset returns them; inputs far from the 0 / 1 scale
    (raw 0-255 pixels, raw counts); feature scales that differ by orders of magnitude;
    constant features; and validation inputs on a different scale from training (e.g.
    normalised in training but not in validation).
Why it matters
    Networks train best on inputs near mean 0 / std 1 (003); a validation set
    normalised differently is a silent bug that makes every validation number wrong.
How it measures
    Running sums over every finite sample the scan read.
Thresholds
    Far from 0/1: some channel/feature with |mean| > MEAN_FAR (3) or std > STD_FAR (5)
    or (non-constant) std < STD_TINY (0.01); feature std ratio (largest / smallest
    non-constant) > SCALE_RATIO (100); a validation channel shifted by more than
    SHIFT (0.5) training standard deviations, or with std outside x0.5..x2 — in
    images any channel, in feature vectors at least 10% of the features.
Fix
    Paste the printed `transforms.Normalize(...)` / `(x - mean) / std`.
"""

from __future__ import annotations

import numpy as np

from danlu.checks.audit.base import AuditContext, Check, CheckResult, register
from danlu.checks.audit.scan import Moments
from danlu.report import Finding, Table

__all__ = ["InputStats", "normalize_snippet", "MEAN_FAR", "STD_FAR", "STD_TINY", "SCALE_RATIO", "SHIFT"]

MEAN_FAR = 3.0
STD_FAR = 5.0
STD_TINY = 0.01
SCALE_RATIO = 100.0
SHIFT = 0.5
_CONSTANT = 1e-8
_PASTE_MAX = 64


def normalize_snippet(m: Moments) -> str:
    """The line to paste: transforms.Normalize for images, (x - mean) / std for feature vectors."""
    mean = "[" + ", ".join(_num(v) for v in m.mean) + "]"
    std = "[" + ", ".join(f"{v:.4g}" if v >= _CONSTANT else "1" for v in m.std) + "]"  # constant: 1
    if m.layout == "channel":
        return f"transforms.Normalize(mean={mean}, std={std})"
    return f"x = (x - torch.tensor({mean})) / torch.tensor({std})"


@register
class InputStats(Check):
    id = "D4"
    name = "normalisation"

    def run(self, ctx: AuditContext) -> CheckResult:
        train = ctx.scans["train"]
        m = train.moments
        if m is None or not m.count.sum():
            kind = train.kind or "unknown"
            return self.skip(f"inputs are {kind}: per-channel/feature statistics apply to images and feature vectors")
        out = CheckResult()
        mean, std = m.mean, m.std
        constant = np.flatnonzero(std < _CONSTANT)
        varying = std >= _CONSTANT
        unit = "channel" if m.layout == "channel" else "feature"
        problems: list[str] = []
        far = np.flatnonzero((np.abs(mean) > MEAN_FAR) | (std > STD_FAR) | (varying & (std < STD_TINY)))
        if len(far):
            k = int(far[np.argmax(np.abs(mean[far]) + std[far])])
            problems.append(f"{len(far)} {unit}(s) far from mean 0 / std 1 (e.g. {unit} {k}: mean {mean[k]:.4g}, "
                            f"std {std[k]:.4g}; values {m.lo:.4g}..{m.hi:.4g})")
        ratio = float(std[varying].max() / std[varying].min()) if varying.sum() > 1 else 1.0
        if m.layout == "feature" and ratio > SCALE_RATIO:
            problems.append(f"feature scales differ {ratio:.0f}x (std {std[varying].min():.3g}..{std[varying].max():.3g})")
        shift = self._shift(ctx, m)
        if shift:
            problems.append(shift)

        snippet = normalize_snippet(m)
        evidence = {
            "layout": m.layout,
            "mean": mean.tolist(),
            "std": std.tolist(),
            "min": m.lo,
            "max": m.hi,
            "constant": constant.tolist(),
            "std_ratio": ratio,
            "snippet": snippet,
        }
        if len(mean) <= 16:
            out.tables.append(Table(
                f"D4 per-{unit} statistics (train)" + train.sample_note(), [unit, "mean", "std"],
                [[k, round(float(a), 6), round(float(b), 6)] for k, (a, b) in enumerate(zip(mean, std))],
            ))
        paste = snippet if len(mean) <= _PASTE_MAX else (
            f"x = (x - mean) / std with the {len(mean)} values in this finding's evidence (mean, std)")
        overall = (f"mean {_num(mean[0])}, std {_num(std[0])}" if len(mean) == 1
                   else f"means {_num(mean.min())}..{_num(mean.max())}, stds {_num(std.min())}..{_num(std.max())}")
        summary = f"train {unit}s: {overall}"
        if len(constant):
            summary += f"; {len(constant)} constant {unit}(s)"
        if problems:
            out.findings.append(Finding(
                self.id, self.name, "warn", summary + "; " + "; ".join(problems), evidence=evidence,
                cause="Inputs far from mean 0 / std 1 (or on different scales) slow or derail training; a "
                      "validation split on another scale makes its numbers meaningless.",
                fix=f"Normalise with the training statistics, in both splits: {paste}",
            ))
        else:
            out.findings.append(Finding(
                self.id, self.name, "pass",
                summary + ("; already normalised" if np.all(np.abs(mean) < 1) else "") + f"; to paste: {paste}",
                evidence=evidence,
            ))
        return out

    @staticmethod
    def _shift(ctx: AuditContext, m: Moments) -> str:
        v = ctx.scans["val"].moments
        if v is None or v.layout != m.layout or len(v.s1) != len(m.s1) or not v.count.sum():
            return ""
        sd = np.maximum(m.std, _CONSTANT)
        ok = m.std >= _CONSTANT
        delta = np.abs(v.mean - m.mean) / sd
        ratio = np.maximum(v.std, _CONSTANT) / sd
        shifted = ok & ((delta > SHIFT) | (ratio > 2) | (ratio < 0.5))
        need = 1 if m.layout == "channel" else max(1, int(0.1 * ok.sum()))
        if shifted.sum() < need:
            return ""
        k = int(np.flatnonzero(shifted)[np.argmax(delta[shifted])])
        return (f"validation is on another scale than training in {int(shifted.sum())} of {len(sd)} "
                f"{'channels' if m.layout == 'channel' else 'features'} (e.g. #{k}: val mean {v.mean[k]:.4g} / "
                f"std {v.std[k]:.4g} vs train {m.mean[k]:.4g} / {m.std[k]:.4g})")


def _num(v: float) -> str:
    """4 significant digits; float noise around zero (|v| < 5e-5) prints as 0."""
    return "0" if abs(v) < 5e-5 else f"{v:.4g}"
