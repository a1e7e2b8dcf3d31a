"""Which process this is, and the few collectives a component needs under data parallelism.

A loss's weighted mean divides by the batch's weight summed over every rank, so the losses need
``mean_over_ranks``; the engine needs the rest. This sits in the core so that a component can ask
without importing the training engine (:mod:`longtail.engine.distributed` builds on it). Every
function is the identity (or rank 0 of 1) in a single process.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

#: environment variables set by torchrun and the elastic agent in every worker
_LAUNCHED = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# ---------------------------------------------------------------------------------- who am I
def launched() -> bool:
    """Whether this process was started by torchrun / the elastic agent (as one of several)."""
    return all(k in os.environ for k in _LAUNCHED) and int(os.environ["WORLD_SIZE"]) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes files and logs."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def barrier() -> None:
    if active():
        dist.barrier()



def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; rank 0 gets its own back)."""
    if not active():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_over_ranks(*values: float) -> tuple[float, ...]:
    """Each value summed over the ranks (float64 on the CPU for gloo, on this rank's GPU for nccl)."""
    if not active():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=collective_device())
    dist.all_reduce(t)
    return tuple(float(v) for v in t.tolist())


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over the ranks, outside autograd (a loss's normalising constant)."""
    if not active():
        return value
    total = value.detach().to(collective_device(), torch.float32).clone()
    dist.all_reduce(total)
    return (total / world_size()).to(value.device, value.dtype)


def collective_device() -> torch.device:
    return torch.device("cuda", local_rank()) if dist.get_backend() == "nccl" else torch.device("cpu")
