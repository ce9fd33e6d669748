"""Distributed data parallel set-up for `torchrun` (one process per device; gloo on CPU, nccl on CUDA).

Under torchrun the environment carries RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address; without it the run
is a single process and none of this does anything."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..fast import pick_device


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """All-reduce mean of a tensor across processes (the tensor itself if single-process)."""
        if not self.enabled:
            return value
        value = value.clone()
        dist.all_reduce(value)
        return value / self.world_size

    def longest(self, seconds: float) -> float:
        """The largest of every process's `seconds` (itself if single-process): one clock for all, so time budgets
        and time schedules end and fire at the same step on every process."""
        if not self.enabled:
            return seconds
        value = torch.tensor([seconds], dtype=torch.float64, device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return float(value)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_true(self, flag: bool) -> bool:
        """Whether `flag` holds on every process (itself if single-process)."""
        if not self.enabled:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value)


def setup(device: str = "auto", timeout_s: float = 600.0) -> Dist:
    """Join the torchrun process group if there is one. Each process gets its own device (CUDA) or an even share
    of the CPU cores (CPU), so N processes on one machine do not oversubscribe it. A collective that waits longer
    than `timeout_s` on another process (hung, or stopped) raises instead of waiting forever: torch's own default
    is 30 minutes; ours, 10, is still far above any step or checkpoint, but rank 0 alone draws sample grids and
    runs quality checks while the others wait, so long checks need more."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    dev = pick_device(device)
    if world_size == 1:
        return Dist(device=dev)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if not dist.is_initialized():
        timeout = timedelta(seconds=timeout_s)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        store = attempt_store(timeout)
        if store is None:
            dist.init_process_group(backend, timeout=timeout)
        else:
            dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def attempt_store(timeout: timedelta):
    """The rendezvous store with a prefix of its own for a restarted torchrun attempt, or None (a first attempt, or
    outside torchrun's agent store). The agent hosts the store and keeps it across --max-restarts; without a prefix
    the restarted processes read the killed attempt's addresses under the same keys and fail to connect ("Gloo
    connectFullMesh failed ... Connection refused", torch 2.13, static and c10d rendezvous alike)."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or attempt == "0":  # a first attempt: torch's way
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timeout)
    return dist.PrefixStore(f"diffusekit/attempt-{attempt}", store)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
