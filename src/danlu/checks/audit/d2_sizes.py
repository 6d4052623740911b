"""D2: size distributions: sequence lengths, image sizes and aspect ratios, box sizes and anchors."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from danlu.checks.base import Check, CheckResult, SkipCheck, register
from danlu.checks.context import Context
from danlu.report import Finding, Table

__all__ = ["Sizes", "length_summary", "kmeans_anchors", "PAD_WASTE"]

PAD_WASTE = 2.0


def length_summary(lengths: np.ndarray) -> dict[str, float]:
    """min, mean, median, p95, p99, max and the suggested max length (p99 rounded up to a multiple of 8)."""
    q = np.quantile(lengths, [0.5, 0.95, 0.99]) if len(lengths) else [math.nan] * 3
    p99 = float(np.ceil(q[2])) if len(lengths) else math.nan
    return {
        "n": int(len(lengths)),
        "min": int(lengths.min()) if len(lengths) else 0,
        "mean": float(lengths.mean()) if len(lengths) else math.nan,
        "median": float(q[0]),
        "p95": float(np.ceil(q[1])) if len(lengths) else math.nan,
        "p99": p99,
        "max": int(lengths.max()) if len(lengths) else 0,
        "suggested_max_length": int(8 * math.ceil(p99 / 8)) if len(lengths) and p99 > 0 else 0,
    }


def kmeans_anchors(wh: np.ndarray, k: int = 9, iters: int = 100, seed: int = 0, merge_iou: float = 0.8) -> np.ndarray:
    """Up to k anchor (width, height) pairs by k-means with 1 - IoU distance, sorted by area.

    Anchors that overlap another, larger cluster's anchor by more than `merge_iou` are
    dropped: data with two box shapes gets two anchors, not nine near-copies.
    """
    wh = wh[(wh > 0).all(axis=1)].astype(np.float64)
    k = min(k, len(np.unique(wh, axis=0)))
    if k == 0:
        return np.zeros((0, 2))
    rng = np.random.default_rng(seed)
    centres = wh[rng.choice(len(wh), k, replace=False)]
    for _ in range(iters):
        assign = np.argmax(_iou(wh, centres), axis=1)
        new = np.array([np.median(wh[assign == j], axis=0) if np.any(assign == j) else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    sizes = np.bincount(np.argmax(_iou(wh, centres), axis=1), minlength=k)
    kept: list[np.ndarray] = []
    for j in np.argsort(-sizes, kind="stable"):
        if sizes[j] and all(_iou(centres[j][None], c[None])[0, 0] <= merge_iou for c in kept):
            kept.append(centres[j])
    out = np.array(kept)
    return out[np.argsort(out[:, 0] * out[:, 1])]


def _iou(wh: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """IoU of boxes and anchors aligned at one corner: (n, k)."""
    inter = np.minimum(wh[:, None, 0], centres[None, :, 0]) * np.minimum(wh[:, None, 1], centres[None, :, 1])
    union = (wh[:, 0] * wh[:, 1])[:, None] + (centres[:, 0] * centres[:, 1])[None] - inter
    return inter / union


@register
class Sizes(Check):
    """Size distributions: sequence lengths, image sizes and aspect ratios, box sizes and anchors.

    Detects: token/text inputs: the length distribution and the length that covers 95%
    and 99% of the training samples, the suggested max length; right padding with 0 is
    detected (every sequence the same length) and measured without the padding; image
    inputs: sizes, aspect ratios, mixed channel counts; targets that are dicts with
    "boxes" (x1, y1, x2, y2): box width/height distribution and k-means anchors (1 - IoU
    distance, as YOLO does).
    Why: The max sequence length, the resize target and the anchor presets are chosen
    from these numbers (000, 002); padding everything to the longest sample wastes
    compute.
    How: From the scan: lengths of token/text inputs (and without trailing 0 padding),
    image heights, widths and channel counts, and the boxes of dict targets; anchors by
    k-means with the 1 - IoU distance.
    Thresholds: Padding to more than PAD_WASTE (2x) the 99% length warns; images with a
    channel count different from the majority warn. Everything else is information.
    Fix: Use the suggested max length / resize / anchors.
    Cannot see: sizes of feature vectors and sequences beyond their shapes; boxes in
    other formats than x1, y1, x2, y2 under a "boxes" key; whether the suggested length
    or size suits the model.
    """

    id = "D2"
    families = ("audit",)
    name = "sizes"

    def run(self, ctx: Context) -> CheckResult:
        out = CheckResult()
        kind = ctx.scans["train"].kind
        if kind in ("tokens", "text"):
            self._lengths(ctx, out)
        elif kind == "image":
            self._images(ctx, out)
        elif kind:
            shapes = ctx.scans["train"].shapes.most_common(3)
            out.findings.append(Finding(
                self.id, "input sizes", "info",
                f"inputs are {kind}: shape(s) " + ", ".join(f"{tuple(s)} x{n:,}" for s, n in shapes),
                evidence={"shapes": [[list(s), n] for s, n in shapes]},
            ))
        if any(s.boxes for s in ctx.scans.values()):
            self._boxes(ctx, out)
        if not out.findings:
            raise SkipCheck("no items could be read")
        return out

    # ---------------------------------------------------------------- tokens
    def _lengths(self, ctx: Context, out: CheckResult) -> None:
        rows, evidence = [], {}
        train_padded, train_summary = False, None
        for split, scan in ctx.scans.items():
            keep = scan.length >= 0
            raw, trimmed = scan.length[keep], scan.trimmed[keep]
            padded = len(raw) > 1 and raw.min() == raw.max() and trimmed.min() != trimmed.max()
            s = length_summary(trimmed if padded else raw)
            evidence[split] = {**s, "padded_to": int(raw.max()) if padded else None}
            rows.append([split, s["n"], s["min"], s["median"], s["p95"], s["p99"], s["max"],
                         int(raw.max()) if padded else "-"])
            if split == "train":
                train_padded, train_summary = padded, s
        out.tables.append(Table("D2 sequence lengths" + (" (without right padding of 0s)" if train_padded else ""),
                                ["split", "n", "min", "median", "95%", "99%", "max", "padded to"], rows))
        s = train_summary
        if not s or not s["n"]:
            out.findings.append(Finding(self.id, "sequence lengths", "skip", "no sequence lengths in train"))
            return
        pad_to = evidence["train"]["padded_to"]
        summary = (f"train lengths median {s['median']:.0f}, 95% <= {s['p95']:.0f}, 99% <= {s['p99']:.0f}, "
                   f"max {s['max']}: suggested max length {s['suggested_max_length']}")
        if train_padded and pad_to > PAD_WASTE * max(s["p99"], 1):
            waste = 1 - s["mean"] / pad_to
            out.findings.append(Finding(
                self.id, "sequence lengths", "warn",
                summary + f"; every sequence is padded to {pad_to} ({waste:.0%} of tokens are padding)",
                evidence=evidence,
                cause="Padding to a length far above what the data needs wastes compute and memory.",
                fix=f"Pad/truncate to {s['suggested_max_length']} (covers 99%), or pad per batch to the batch's "
                    "longest sequence in a collate_fn.",
            ))
            return
        out.findings.append(Finding(self.id, "sequence lengths", "info", summary, evidence=evidence))

    # ---------------------------------------------------------------- images
    def _images(self, ctx: Context, out: CheckResult) -> None:
        rows, evidence, warn = [], {}, []
        for split, scan in ctx.scans.items():
            hw = scan.image_hw[scan.image_hw[:, 0] >= 0]
            if not len(hw):
                continue
            sizes = Counter(map(tuple, hw.tolist()))
            aspect = hw[:, 1] / np.maximum(hw[:, 0], 1)
            evidence[split] = {
                "distinct_sizes": len(sizes),
                "most_common": [[list(s), n] for s, n in sizes.most_common(5)],
                "height": _quantiles(hw[:, 0]),
                "width": _quantiles(hw[:, 1]),
                "aspect_w_over_h": _quantiles(aspect),
                "channels": dict(scan.channels),
            }
            for (h, w), n in sizes.most_common(5):
                rows.append([split, f"{h}x{w}", n, f"{n / len(hw):.1%}"])
            if len(scan.channels) > 1:
                main, _ = scan.channels.most_common(1)[0]
                odd = {c: n for c, n in scan.channels.items() if c != main}
                warn.append(f"{split}: {sum(odd.values())} image(s) with {', '.join(map(str, odd))} channel(s) "
                            f"while most have {main}")
        if not evidence:
            return
        out.tables.append(Table("D2 image sizes (most common)", ["split", "height x width", "count", "share"], rows))
        tr = evidence.get("train") or next(iter(evidence.values()))
        channels = "/".join(map(str, sorted(tr["channels"])))
        if tr["distinct_sizes"] == 1:
            (h, w), _ = tr["most_common"][0]
            summary = f"all training images are {h}x{w} ({channels} channel)"
        else:
            hq, wq, aq = tr["height"], tr["width"], tr["aspect_w_over_h"]
            summary = (f"{tr['distinct_sizes']} distinct sizes in train: height {hq['min']:.0f}-{hq['max']:.0f} "
                       f"(median {hq['median']:.0f}), width {wq['min']:.0f}-{wq['max']:.0f} (median {wq['median']:.0f}), "
                       f"aspect w/h {aq['p5']:.2f}-{aq['p95']:.2f}: resize to about "
                       f"{hq['median']:.0f}x{wq['median']:.0f}")
        if warn:
            out.findings.append(Finding(
                self.id, "image sizes", "warn", summary + "; " + "; ".join(warn), evidence=evidence,
                cause="Grayscale and colour (or RGBA) images mixed: batching fails or channels mean different things.",
                fix="Convert every image to the same mode when loading (e.g. PIL's `img.convert('RGB')`).",
            ))
        else:
            out.findings.append(Finding(self.id, "image sizes", "info", summary, evidence=evidence))

    # ----------------------------------------------------------------- boxes
    def _boxes(self, ctx: Context, out: CheckResult) -> None:
        all_boxes = [b for _, b, _ in ctx.scans["train"].boxes if len(b)]
        if not all_boxes:
            return
        boxes = np.concatenate(all_boxes).astype(np.float64)
        wh = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
        wh = wh[(wh > 0).all(axis=1) & np.isfinite(wh).all(axis=1)]
        if not len(wh):
            return
        anchors = kmeans_anchors(wh, k=9, seed=ctx.recipe.seed)
        side = np.sqrt(wh[:, 0] * wh[:, 1])
        evidence = {
            "boxes": int(len(wh)),
            "width": _quantiles(wh[:, 0]),
            "height": _quantiles(wh[:, 1]),
            "sqrt_area": _quantiles(side),
            "aspect_w_over_h": _quantiles(wh[:, 0] / wh[:, 1]),
            "anchors": anchors.round(1).tolist(),
        }
        out.tables.append(Table("D2 k-means anchors (width, height), by area",
                                ["anchor", "width", "height"],
                                [[k, round(float(w), 1), round(float(h), 1)] for k, (w, h) in enumerate(anchors)]))
        q = evidence["sqrt_area"]
        out.findings.append(Finding(
            self.id, "box sizes", "info",
            f"{len(wh):,} training boxes, size (sqrt area) {q['p5']:.1f}-{q['p95']:.1f} (median {q['median']:.1f}); "
            f"{len(anchors)} k-means anchors suggested",
            evidence=evidence,
        ))


def _quantiles(x: np.ndarray) -> dict[str, float]:
    q = np.quantile(x, [0, 0.05, 0.5, 0.95, 1])
    return dict(zip(["min", "p5", "median", "p95", "max"], map(float, q)))
