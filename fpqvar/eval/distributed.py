"""torch.distributed plumbing for sharded sampling: one process per device (torchrun), gloo on CPU, NCCL on GPUs.

Under torchrun the environment holds RANK / WORLD_SIZE / LOCAL_RANK; a plain ``python`` run is rank 0 of 1
and needs no process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

# Ranks only meet at the start and the end of a sample set; a 50k-image run on one GPU per rank takes hours.
BARRIER_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (a small picklable value: an error message, a flag)."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def init_from_env(device: str = "auto") -> DistContext:
    """Join the process group described by the torchrun environment (if WORLD_SIZE > 1).

    ``device``: "auto" (cuda:LOCAL_RANK when CUDA is available, else cpu), "cpu", or "cuda".
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but CUDA is not available")
    dev = f"cuda:{local_rank}" if use_cuda else "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=BARRIER_TIMEOUT)
    return DistContext(rank, world, local_rank, dev)


def from_initialized_group(device: str = "cpu") -> DistContext:
    """Context for a process group that the caller already initialised (tests with mp.spawn)."""
    return DistContext(dist.get_rank(), dist.get_world_size(), 0, device)


def shutdown(ctx: DistContext) -> None:
    if ctx.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def run_sample_set(build_var: Callable[[], object], config, out_dir: str | os.PathLike, ctx: DistContext, *,
                   progress: bool = True, max_units: int | None = None, provenance: dict | None = None) -> Path | None:
    """The whole sharded, resumable flow; returns the packed npz path on rank 0 when the set is complete
    (None on other ranks, or when ``max_units`` left work undone). ``build_var`` is called only when this rank
    has units to sample. The packed file is rebuilt from the validated units every time (a damaged
    ``samples.npz`` is never trusted: issue 16.6). ``provenance``: recorded in a new folder's manifest."""
    from fpqvar.eval import sample_set as ss

    if ctx.is_main:
        ss.prepare_dir(out_dir, config, write=True, provenance=provenance)
    ctx.barrier()
    if not ctx.is_main:
        ss.prepare_dir(out_dir, config, write=False)
    ss.generate_units(build_var, config, out_dir, rank=ctx.rank, world=ctx.world, progress=progress,
                      max_units=max_units)
    ctx.barrier()
    packed = None
    if ctx.is_main and not ss.missing_units(config, out_dir):
        packed = ss.pack(config, out_dir)
    ctx.barrier()
    return packed
