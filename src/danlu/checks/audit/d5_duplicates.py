"""D5: exact duplicates, train/validation leakage, and near duplicates."""

from __future__ import annotations

import numpy as np

from danlu.checks.audit.neighbours import (
    close_ratio,
    intrinsic_dimension,
    knn,
    near_pairs,
    prepare,
    typical_distance,
)
from danlu.checks.audit.scan import SplitScan, varies_between_reads
from danlu.checks.base import Check, CheckResult, register
from danlu.checks.context import Context
from danlu.report import Finding, Table

__all__ = ["Duplicates", "exact_groups", "leakage_pairs"]

_MAX_LISTED = 1000
_SHOWN = 20


def exact_groups(scan: SplitScan) -> list[np.ndarray]:
    """Groups (arrays of dataset indices, ascending) of loaded items with identical inputs."""
    pos = np.flatnonzero(scan.ok)
    if len(pos) < 2:
        return []
    h = scan.input_hash[pos]
    order = np.argsort(h, kind="stable")
    hs, ps = h[order], pos[order]
    cuts = np.flatnonzero(hs[1:] != hs[:-1]) + 1
    groups = [g for g in np.split(ps, cuts) if len(g) > 1]
    groups = [np.sort(scan.indices[g]) for g in groups]
    return sorted(groups, key=lambda g: int(g[0]))


def leakage_pairs(train: SplitScan, val: SplitScan) -> list[tuple[int, int, bool]]:
    """(train index, val index, same target) for every pair of identical inputs across the splits."""
    tp, vp = np.flatnonzero(train.ok), np.flatnonzero(val.ok)
    common = np.intersect1d(train.input_hash[tp], val.input_hash[vp])
    if common.size == 0:
        return []
    by_hash: dict[int, list[int]] = {}
    for p in tp[np.isin(train.input_hash[tp], common)]:
        by_hash.setdefault(int(train.input_hash[p]), []).append(int(p))
    pairs = []
    for q in vp[np.isin(val.input_hash[vp], common)]:
        for p in by_hash[int(val.input_hash[q])]:
            same = bool(train.target_hash[p] == val.target_hash[q])
            pairs.append((int(train.indices[p]), int(val.indices[q]), same))
    return sorted(pairs, key=lambda t: (t[1], t[0]))


@register
class Duplicates(Check):
    """Exact duplicates, train/validation leakage, and near duplicates.

    Detects: leakage: an input present in both the training and the validation split
    (exact content match); every (train index, val index) pair is listed; exact
    duplicates within a split, and duplicates that carry different labels; near
    duplicates (a copy with small noise, or a pixel or two changed) within a split and
    across the splits, for image and feature-vector inputs. Training items that change
    between two reads (random augmentation in __getitem__) cannot match by content: the
    leakage finding is then "skip" with that reason and the way to check (audit without
    augmentation), never a silent pass.
    Why: A validation sample that is also in training measures memory, not
    generalisation (002's case study); duplicates overweight some samples; conflicting
    labels on the same input put a floor under the loss.
    How: Content hashes of the inputs exactly as the datasets return them (dtype, shape
    and bytes; see danlu.checks.audit.inputs), grouped; near duplicates by nearest
    neighbours of small embeddings: a pair is "close" when chance alone would rarely put
    it so near, given the data's intrinsic dimension and size (in 2-D ordinary neighbours
    are not copies; in 8x8 digits a copy with small noise is), or differs in at most 2%
    of its elements (danlu.checks.audit.neighbours).
    Thresholds: Any leakage fails (a CI gate). Exact or near duplicates warn.
    Fix: Deduplicate before splitting, and split by group (source, patient, writer) so
    copies land on one side; drop or fix the listed validation samples.
    Cannot see: copies under larger changes than small noise or a few elements (crops,
    rotations, rescaling, strong re-encoding); near duplicates of token ids and text
    (exact copies only); pairs beyond each sample's 8 nearest candidates; with
    `--limit`, items outside the scanned part.
    """

    id = "D5"
    families = ("audit",)
    name = "duplicates and leakage"

    def run(self, ctx: Context) -> CheckResult:
        train, val = ctx.scans["train"], ctx.scans["val"]
        out = CheckResult()
        random_train = varies_between_reads(ctx.train, train.indices[train.ok])
        self._leakage(train, val, random_train, out)
        self._exact(ctx, random_train, out)
        self._near(ctx, out)
        return out

    # ---------------------------------------------------------------- leakage
    def _leakage(self, train: SplitScan, val: SplitScan, random_train: bool, out: CheckResult) -> None:
        pairs = leakage_pairs(train, val)
        val_hit = sorted({v for _, v, _ in pairs})
        note = train.sample_note() or val.sample_note()
        if not pairs:
            if random_train:
                out.findings.append(Finding(
                    self.id, "train/val leakage", "skip",
                    "cannot check leakage: training items change between two reads (random augmentation)",
                    evidence={"random_train_items": True},
                    cause="The training dataset applies random transforms in __getitem__, so copies never match by content.",
                    fix="Audit a variant of the recipe without training augmentation (e.g. an `augment: bool` "
                        "hyperparameter set to false), then train with it on.",
                ))
                return
            out.findings.append(Finding(
                self.id, "train/val leakage", "pass",
                f"no validation input is also in training ({val.n:,} val vs {train.n:,} train){note}",
                evidence={"pairs": 0},
            ))
            return
        differ = sum(1 for *_, same in pairs if not same)
        out.findings.append(Finding(
            self.id, "train/val leakage", "fail",
            f"{len(val_hit):,} of {val.n:,} validation samples ({len(val_hit) / max(val.n, 1):.1%}) are exact "
            f"copies of training samples ({len(pairs):,} pairs; first val index {val_hit[0]}){note}",
            evidence={
                "pairs": len(pairs),
                "val_indices_leaked": len(val_hit),
                "pairs_with_different_targets": differ,
                "pair_list": [[t, v] for t, v, _ in pairs[:_MAX_LISTED]],
                "columns": ["train_index", "val_index"],
            },
            cause="The same input is in both splits: validation then measures memory, not generalisation. "
                  "Usual causes: duplicates in the raw data before a random split, or overlapping index lists.",
            fix="Deduplicate by content before splitting, split by group (source, person, file) so copies stay "
                "on one side, and drop the listed validation indices.",
        ))
        out.tables.append(Table(
            f"D5 leakage: train/val pairs with identical inputs (first {min(_SHOWN, len(pairs))} of {len(pairs):,})",
            ["train index", "val index", "same target"],
            [[t, v, s] for t, v, s in pairs[:_SHOWN]],
        ))

    # ------------------------------------------------------- exact duplicates
    def _exact(self, ctx: Context, random_train: bool, out: CheckResult) -> None:
        rows, evidence, extra_total, conflicts_total = [], {}, 0, 0
        for name, scan in ctx.scans.items():
            groups = exact_groups(scan)
            conflicts = [g for g in groups if len(set(scan.target_hash[scan.positions(g)].tolist())) > 1]
            extra = sum(len(g) - 1 for g in groups)
            extra_total += extra
            conflicts_total += len(conflicts)
            evidence[name] = {
                "groups": len(groups),
                "extra_copies": extra,
                "conflicting_label_groups": len(conflicts),
                "group_list": [g.tolist() for g in groups[:_MAX_LISTED]],
                "conflict_list": [g.tolist() for g in conflicts[:_MAX_LISTED]],
            }
            for g in groups[:_SHOWN]:
                rows.append([name, len(g), ", ".join(map(str, g[:8].tolist())) + (" ..." if len(g) > 8 else ""),
                             any(g is c for c in conflicts)])
        evidence["random_train_items"] = random_train
        if not extra_total:
            out.findings.append(Finding(
                self.id, "exact duplicates", "pass",
                "no exact duplicate inputs within " + " or ".join(ctx.scans)
                + (" (training items are augmented: only validation is meaningful)" if random_train else ""),
                evidence=evidence,
            ))
            return
        parts = [f"{name}: {evidence[name]['extra_copies']:,} extra copies in {evidence[name]['groups']:,} groups"
                 for name in ctx.scans if evidence[name]["groups"]]
        summary = "; ".join(parts)
        if conflicts_total:
            summary += f"; {conflicts_total} group(s) carry different labels for the same input"
        out.findings.append(Finding(
            self.id, "exact duplicates", "warn", summary, evidence=evidence,
            cause="Repeated samples count several times in the loss and the metrics"
                  + ("; identical inputs with different labels put a floor under the loss" if conflicts_total else "")
                  + ".",
            fix="Deduplicate by content (keep one copy per group); for conflicting labels, decide the right label "
                "or drop the sample.",
        ))
        out.tables.append(Table("D5 exact duplicates within a split (first groups)",
                                ["split", "copies", "indices", "labels differ"], rows))

    # -------------------------------------------------------- near duplicates
    def _near(self, ctx: Context, out: CheckResult) -> None:
        train, val = ctx.scans["train"], ctx.scans["val"]
        if not len(train.embed_pos):
            kind = train.kind or "unknown"
            out.findings.append(Finding(
                self.id, "near duplicates", "skip",
                f"near-duplicate search covers images and feature vectors; inputs here are {kind}",
            ))
            return
        kind = train.embed_kind
        ref = prepare(train.embed, kind)
        t_hash = train.input_hash[train.embed_pos]
        nn_train = knn(ref, ref, same=True)
        typical_train = typical_distance(nn_train)
        dimension = intrinsic_dimension(nn_train)
        ratio = close_ratio(len(ref), dimension)
        found: dict[str, list[tuple[int, int, float, str]]] = {}
        found["train"] = [
            (int(train.indices[train.embed_pos[p.a]]), int(train.indices[train.embed_pos[p.b]]), p.distance, p.rule)
            for p in near_pairs(ref, ref, typical=typical_train, same=True, hashes=(t_hash, t_hash),
                                neighbours=nn_train, ratio=ratio)
        ]
        searched = {"train": len(ref)}
        if len(val.embed_pos) and val.embed.shape[1] == train.embed.shape[1] and val.embed_kind == kind:
            q = prepare(val.embed, kind, ref=train.embed)
            v_hash = val.input_hash[val.embed_pos]
            nn_val = knn(q, q, same=True)
            found["val"] = [
                (int(val.indices[val.embed_pos[p.a]]), int(val.indices[val.embed_pos[p.b]]), p.distance, p.rule)
                for p in near_pairs(q, q, typical=typical_distance(nn_val), same=True, hashes=(v_hash, v_hash),
                                    neighbours=nn_val)
            ]
            found["val->train"] = [
                (int(train.indices[train.embed_pos[p.b]]), int(val.indices[val.embed_pos[p.a]]), p.distance, p.rule)
                for p in near_pairs(q, ref, typical=typical_train, same=False, hashes=(v_hash, t_hash),
                                    ratio=close_ratio(len(q), dimension))
            ]
            searched["val"] = len(q)
        total = sum(len(v) for v in found.values())
        sampled = any(searched[s] < ctx.scans[s].n for s in searched)
        evidence = {
            "searched": searched,
            "typical_nn_distance_train": typical_train,
            "intrinsic_dimension_train": round(dimension, 2),
            "close_ratio_train": round(ratio, 4),
            "rule": (f"distance < {ratio:.3g} x typical nearest-neighbour distance (what chance makes rare "
                     f"at intrinsic dimension {dimension:.1f}), or <= 2% of elements differ"),
            **{f"{k}_pairs": len(v) for k, v in found.items()},
            "pair_list": {k: [[a, b, round(d, 4), r] for a, b, d, r in v[:_MAX_LISTED]] for k, v in found.items()},
        }
        scope = ", ".join(f"{n:,} {s}" for s, n in searched.items()) + (" (a sample)" if sampled else "")
        if not total:
            out.findings.append(Finding(
                self.id, "near duplicates", "pass",
                f"no near-duplicate pairs among {scope} {kind} embeddings", evidence=evidence,
            ))
            return
        counts = ", ".join(f"{len(v)} {k}" for k, v in found.items() if v)
        cross = len(found.get("val->train", []))
        out.findings.append(Finding(
            self.id, "near duplicates", "warn",
            f"{total} near-duplicate pair(s): {counts} (searched {scope})",
            evidence=evidence,
            cause=("Validation samples nearly identical to training samples inflate validation scores. "
                   if cross else "") + "Near copies (re-encoded, resized, lightly edited) weigh twice in training.",
            fix="Look at the listed pairs; drop the copies, and split by group so near copies stay on one side.",
        ))
        rows = [[k, a, b, round(d, 4), r] for k, v in found.items() for a, b, d, r in v[:_SHOWN]]
        out.tables.append(Table("D5 near-duplicate pairs (first of each kind)",
                                ["where", "index a (train for val->train)", "index b", "distance", "rule"], rows))
