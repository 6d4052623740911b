"""Several processes, one run (S14): what the engine needs from torch.distributed, in one place.

`danlu train RECIPE --nproc N` (or `torchrun --nproc_per_node N -m danlu.cli train RECIPE`)
starts N processes; each finds its place from the environment torchrun sets (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and joins one process group: NCCL on CUDA,
gloo on the CPU. Then:

- the model trains inside DistributedDataParallel (gradients averaged across processes);
- the training set is sharded by a DistributedSampler (reshuffled each epoch from the
  recipe's seed), so the global batch is ``batch_size x N``;
- validation is sharded without padding, and every process gathers the shards' sums and
  outputs, so the whole-set loss and metrics are those of one process over the whole set;
- each step's loss is averaged across processes on the device (no host sync);
- rank 0 owns the run: the record, the curves, the checkpoints; the others log nothing;
- a stop (Ctrl-C, SIGTERM, a callback, early stopping) is agreed by all processes at the
  same step, so none waits forever in a collective.

Outside torchrun (WORLD_SIZE unset or 1) every method is the single-process identity.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

__all__ = ["Dist", "ShardSampler", "free_port", "launch_command"]


class ShardSampler(Sampler[int]):
    """Indices rank, rank + N, rank + 2N, ... in order: each validation item exactly once over all ranks."""

    def __init__(self, size: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, size, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class Dist:
    """This process's place among the processes of one run."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str = ""
    owned: bool = False       # this object started the process group (and ends it)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        """Join the process group torchrun prepared (a no-op object when there is none)."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return cls()
        import torch.distributed as td

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        owned = not td.is_initialized()
        if owned:
            td.init_process_group(backend)
        return cls(world=td.get_world_size(), rank=td.get_rank(), local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                   backend=td.get_backend(), owned=owned)

    def describe(self) -> dict[str, Any]:
        """What the reproducibility record keeps about the process layout."""
        devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
            if torch.cuda.is_available() else []
        return {"world_size": self.world, "backend": self.backend or None, "devices": devices}

    def device(self, device: torch.device) -> torch.device:
        """Each process its own GPU (LOCAL_RANK); CPU processes share the CPU."""
        if self.active and device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    # ----------------------------------------------------------- collectives
    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over the processes, computed on its device (no host sync)."""
        if not self.active:
            return value
        import torch.distributed as td

        out = value.detach().float().clone()
        td.all_reduce(out, op=td.ReduceOp.SUM)
        return out / self.world

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process when `flag` is true on any of them (reads one number back)."""
        if not self.active:
            return flag
        import torch.distributed as td

        value = torch.tensor([1.0 if flag else 0.0], device=device)
        td.all_reduce(value, op=td.ReduceOp.MAX)
        return bool(value.item() > 0)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every process."""
        if not self.active:
            return obj
        import torch.distributed as td

        box = [obj]
        td.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order, on every process."""
        if not self.active:
            return [obj]
        import torch.distributed as td

        out: list[Any] = [None] * self.world
        td.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as td

            td.barrier()

    def close(self, together: bool = False) -> None:
        """End the process group this object started. `together`: every process got here normally, so
        wait for the others first: none tears down its connections while a peer still uses them."""
        if self.owned:
            import torch.distributed as td

            if td.is_initialized():
                if together:
                    td.barrier()
                td.destroy_process_group()
            self.owned = False

    # ---------------------------------------------------------- data, model
    def shard(self, train: Dataset, val: Dataset, train_loader: DataLoader, val_loader: DataLoader,
              seed: int) -> tuple[DataLoader, DataLoader]:
        """The recipe's loaders, each process reading its shard (same batch size, collate and workers)."""
        if not self.active:
            return train_loader, val_loader
        if isinstance(getattr(train_loader, "sampler", None), DistributedSampler):
            return train_loader, val_loader          # the recipe shards itself
        common = {"batch_size": train_loader.batch_size, "collate_fn": train_loader.collate_fn,
                  "num_workers": train_loader.num_workers, "pin_memory": train_loader.pin_memory,
                  "worker_init_fn": train_loader.worker_init_fn}
        sampler = DistributedSampler(train, num_replicas=self.world, rank=self.rank, shuffle=True, seed=seed)
        shard_train = DataLoader(train, sampler=sampler, **common)
        shard_val = DataLoader(val, sampler=ShardSampler(len(val), self.rank, self.world),  # type: ignore[arg-type]
                               **{**common, "batch_size": val_loader.batch_size, "collate_fn": val_loader.collate_fn})
        return shard_train, shard_val

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The module training runs: DistributedDataParallel around it when several processes train."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def free_port() -> int:
    """A TCP port nobody listens on now (for torchrun's rendezvous on this machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_command(nproc: int, argv: list[str], python: str) -> list[str]:
    """`python -m torch.distributed.run` starting `nproc` copies of `danlu <argv>` on this machine."""
    return [python, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
            "--master_port", str(free_port()), "-m", "danlu.cli", *argv]
