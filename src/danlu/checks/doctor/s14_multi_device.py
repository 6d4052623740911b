"""S14: multi-device training works: N processes take one step and agree with one process."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from danlu.checks.base import Check, SkipCheck, register
from danlu.report import Finding

__all__ = ["MultiDevice", "main"]


@register
class MultiDevice(Check):
    """Multi-device training: N processes train one step together and agree with one process.

    Detects: parameters that get no gradient (DistributedDataParallel stops with an error
    on them, usually a step later and far from the cause), processes that get different
    numbers of batches (the one with more waits forever in a collective), replicas whose
    weights differ after a step, and a loss that is not a mean over the batch (N processes
    average their losses, so a summed loss trains with 1/N of the intended gradient).
    Why: practice S14 (001: "make sure multi-GPU training works" before scaling up, T7).
    These bugs cost an hour of cluster time to surface, or never surface and quietly train
    a different model than the single-device one.
    How: starts S14.nproc processes through PyTorch's launcher (gloo on the CPU, NCCL on
    GPUs), each building the run as `danlu train --nproc` does (sharded loader, DDP). One
    process lists the parameters without a gradient after a backward pass; every process
    counts its batches; the mean of the processes' losses on their first batches is
    compared with one process's loss on the whole global batch (same weights, eval mode);
    two DDP steps are taken and the parameters compared across processes.
    Thresholds: any parameter without gradient, unequal batch counts, parameters that
    differ by more than S14.tolerance (1e-4, relative) or a reduced loss off the global
    one by more than S14.tolerance fail. Skipped unless S14.nproc >= 2 (`danlu check
    RECIPE --nproc 2`). Budget: S14.timeout (300 s) for the processes.
    Fix: use every layer you define, or build DDP with find_unused_parameters=True; shard
    with a DistributedSampler (padding, or drop_last) so every process gets as many
    batches; average the loss over the batch (reduction="mean").
    Cannot see: problems that need more than two steps or real GPUs to appear (NCCL
    timeouts, memory per device), models that use collectives of their own, and several
    machines (it runs all processes here).
    """

    id = "S14"
    name = "multi-device training"
    stage = "train"
    settings = ("nproc", "tolerance", "timeout")
    nproc = 1
    tolerance = 1e-4
    timeout = 300.0

    def run(self, ctx) -> Finding:
        if int(self.nproc) < 2:
            raise SkipCheck("tests multi-process training when asked: set S14.nproc=2 "
                            "(`danlu check RECIPE --nproc 2`)")
        from danlu.distributed import free_port
        from danlu.recipe import recipe_spec

        spec = recipe_spec(ctx.recipe)
        if not spec:
            raise SkipCheck("the recipe has no file to start other processes from (it was defined in a notebook or "
                            "a test); save it in a .py file")
        overrides = [f"{k}={v}" for k, v in ctx.recipe.hparams().items()]
        with tempfile.TemporaryDirectory(prefix="danlu-s14-") as tmp:
            out = Path(tmp) / "s14.json"
            command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(int(self.nproc)),
                       "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                       "-m", "danlu.checks.doctor.s14_multi_device", spec, str(out), *overrides]
            try:
                proc = subprocess.run(command, capture_output=True, text=True, timeout=float(self.timeout))
            except subprocess.TimeoutExpired:
                return self.finding("fail", f"{self.nproc} processes did not finish one step in {self.timeout:.0f} s "
                                    "(a process waiting forever in a collective: unequal batch counts, or a hang)",
                                    fix="Shard the data evenly (DistributedSampler) and look for code that only some "
                                        "processes run.")
            if not out.exists():
                tail = "\n".join((proc.stderr or "").strip().splitlines()[-8:])
                return self.finding("fail", f"the {self.nproc} processes failed before reporting (exit {proc.returncode})",
                                    details=tail, fix="Read the processes' error above; run `danlu train RECIPE --nproc "
                                    f"{self.nproc}` to see it in full.")
            result = json.loads(out.read_text())
        return self.judge(result)

    def judge(self, r: dict[str, Any]) -> Finding:
        n = r["world"]
        evidence = {k: r[k] for k in ("world", "backend", "batches", "unused", "loss_reduced", "loss_global",
                                      "param_diff", "error") if k in r}
        problems, fixes = [], []
        if r.get("unused"):
            names = ", ".join(r["unused"][:6]) + (f" and {len(r['unused']) - 6} more" if len(r["unused"]) > 6 else "")
            problems.append(f"{len(r['unused'])} parameter(s) get no gradient ({names}); DDP stops with an error on them")
            fixes.append("use or remove those layers (or construct DDP with find_unused_parameters=True)")
        if len(set(r["batches"])) > 1:
            problems.append(f"the processes get {', '.join(map(str, r['batches']))} batches: the one with more waits "
                            "forever in a collective")
            fixes.append("shard with a DistributedSampler (it pads to equal shards)")
        if r.get("error"):
            problems.append(f"a DDP step failed: {r['error']}")
        diff = r.get("param_diff")
        if diff is not None and diff > self.tolerance:
            problems.append(f"after two steps the replicas' weights differ by {diff:.3g} (relative)")
            fixes.append("keep randomness that changes weights out of the step, and do not update parameters outside "
                         "the optimizer")
        reduced, whole = r.get("loss_reduced"), r.get("loss_global")
        if reduced is not None and whole is not None and math.isfinite(whole):
            off = abs(reduced - whole) / max(abs(whole), 1e-12)
            evidence["loss_relative_difference"] = off
            if off > self.tolerance:
                ratio = reduced / whole if whole else float("nan")
                summed = abs(ratio * n - 1) < 0.05 or abs(ratio - 1 / n) < 0.05 / n
                problems.append(f"the mean of the {n} processes' losses is {reduced:.5g} but one process's loss on the "
                                f"same global batch is {whole:.5g}" + (" (a factor of N: the loss is summed over the "
                                                                       "batch)" if summed else ""))
                fixes.append("average the loss over the batch (reduction='mean'), so that N processes train like one")
        if problems:
            return self.finding("fail", "; ".join(problems), evidence=evidence,
                                cause="multi-process training would fail or train a different model than one process",
                                fix="; ".join(fixes) or "see the processes' error")
        return self.finding(
            "pass",
            f"{n} processes ({r.get('backend')}): {r['batches'][0]} batches each, every parameter gets a gradient, the "
            f"mean loss {reduced:.5g} equals one process's on the global batch, replicas agree after 2 steps "
            f"(max difference {diff:.2g})", evidence=evidence)


def _flat(model) -> Any:
    import torch

    return torch.cat([p.detach().float().reshape(-1).cpu() for p in model.parameters()])


def main(argv: list[str] | None = None) -> int:
    """Run by each process of the check: SPEC OUT_JSON k=v ... (see MultiDevice.run)."""
    import copy

    import torch

    from danlu.device import resolve_device, to_device
    from danlu.distributed import Dist
    from danlu.recipe import load_recipe
    from danlu.step import prepare

    spec, out, *overrides = (argv if argv is not None else sys.argv[1:])
    dist = Dist.from_env()
    device = dist.device(resolve_device("auto"))
    recipe = load_recipe(spec, overrides)
    result: dict[str, Any] = {"world": dist.world, "backend": dist.backend}
    try:
        prep = prepare(recipe, device, max_steps=2, dist=dist)
        result["batches"] = dist.gather(len(prep.train_loader))
        first = next(iter(prep.train_loader))
        # parameters without gradient: one plain backward on a copy of the model
        probe = copy.deepcopy(prep.model).train()
        output, target = recipe.forward(probe, to_device(first, device))
        recipe.loss(output, target).backward()  # a probe that reads .grad; nothing is updated
        result["unused"] = [n for n, p in probe.named_parameters() if p.requires_grad and p.grad is None]
        # the reduced loss against one process's loss on the global batch (eval mode: no dropout)
        model = prep.model
        model.eval()
        with torch.no_grad():
            output, target = recipe.forward(model, to_device(first, device))
            mine = recipe.loss(output, target)
            result["loss_reduced"] = float(dist.mean(mine))
            batches = dist.gather(to_device(first, "cpu"))
            if dist.main:
                merged = torch.utils.data.default_collate([item for b in batches for item in zip(*b)]) \
                    if all(isinstance(b, (list, tuple)) for b in batches) else None
                if merged is not None:
                    output, target = recipe.forward(model, to_device(merged, device))
                    result["loss_global"] = float(recipe.loss(output, target))
        model.train()
        # two DDP steps, then the replicas compared
        if not result["unused"]:
            loader = iter(prep.train_loader)
            for _ in range(2):
                prep.step(next(loader))
            flats = dist.gather(_flat(model))
            scale = float(flats[0].abs().max()) or 1.0
            result["param_diff"] = max(float((f - flats[0]).abs().max()) for f in flats) / scale
    except Exception as exc:  # reported as a finding, in the process that saw it
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    if dist.main:
        Path(out).write_text(json.dumps(result))
    dist.close()
    return 0


if __name__ == "__main__":  # pragma: no cover - run by torch.distributed.run
    sys.exit(main())
