"""Data-parallel training on ``torch.distributed``: the few helpers the engine and the API share.

Processes are started by torch's own launcher, never by longtail: ``torchrun`` (one node or many,
through its rendezvous) or, for ``train.devices=N`` on one machine, the same elastic agent through
:func:`torch.distributed.launcher.api.elastic_launch`. The agent watches every process: when one
fails it stops the others and reports the failing rank with its error (no hang on a collective).

Conventions (so that N processes compute what one process computes):

- ``data.batch_size`` is the *global* batch: each of the W processes takes ``batch_size / W``. Every
  sampler's stream is the same on every rank (seeded by (seed, epoch)) and is sharded round-robin by
  :class:`longtail.data.samplers.DistributedShard`, so the union of the W rank batches k is exactly the
  single-process batch k and DDP's gradient average is the single-process mean.
- Evaluation shards the split the same way and gathers logits, targets and features back in dataset
  order on every rank: metrics, best-epoch selection, CDB weights, DRW/CLS schedules, BBN alpha and
  post-hoc tau are then computed from identical inputs on every rank.
- Only rank 0 writes the run directory (config, splits, metrics.jsonl, checkpoints, report).
- Rank 0 decides the run (its folder, config, resume checkpoint, splits) and broadcasts it; the
  final evaluation reads rank 0's ``best.pt``, so a multi-node run keeps ``output_dir`` on a file
  system every node sees.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..core.errors import ConfigError, LongtailError
from ..core.ranks import (  # noqa: F401  (re-exported: the engine and the training package ask this module)
    active,
    barrier,
    broadcast,
    collective_device,
    is_main,
    launched,
    local_rank,
    mean_over_ranks,
    rank,
    sum_over_ranks,
    world_size,
)

log = logging.getLogger("longtail")

DIST_TIMEOUT_MINUTES = 120
PEER_LOST_GRACE_S = 5.0


def backend_for(device_name: str) -> str:
    """nccl for CUDA GPUs, gloo everywhere else (CPU)."""
    wants_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    return "nccl" if wants_cuda else "gloo"


@contextlib.contextmanager
def session(device_name: str) -> Iterator[None]:
    """Join the process group of a launched worker for the duration of the block (a no-op otherwise).

    Non-zero ranks log warnings only, so the console shows one copy of each message."""
    if not launched() or (dist.is_available() and dist.is_initialized()):
        yield
        return
    backend = backend_for(device_name)
    if backend == "nccl":
        local, visible = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local >= visible:
            raise ConfigError(f"process {local} of this machine has no GPU ({visible} visible); start at most {visible} processes "
                              "per machine (train.devices or --nproc_per_node), or set train.device=cpu")
        torch.cuda.set_device(local)
    # a crashed rank is stopped by the launcher at once; the timeout only bounds a true hang, and is
    # long because rank 0 may decode a large set into the tensor cache while the others wait
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=DIST_TIMEOUT_MINUTES))
    logger = logging.getLogger("longtail")
    level = logger.level
    if dist.get_rank() != 0:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
        dist.destroy_process_group()


def device_for(device: torch.device) -> torch.device:
    """This rank's GPU (``cuda:LOCAL_RANK``) under DDP on CUDA; ``device`` otherwise."""
    if active() and device.type == "cuda":
        return torch.device("cuda", local_rank())
    return device


# ---------------------------------------------------------------------------------- launching
def launch(processes: int, entrypoint: Callable[..., Any], *args: Any) -> Any:
    """Run ``entrypoint(*args)`` in ``processes`` workers on this machine through torch's elastic agent;
    rank 0's return value. A failed worker stops the others and raises one line naming its rank and error."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=f"longtail-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0, monitor_interval=0.2, start_method="spawn",
    )
    try:
        results = elastic_launch(config, _recorded)(entrypoint, *args)
    except ChildFailedError as e:
        raise LongtailError(failure_line(e, processes)) from None
    return results[0]


def _recorded(entrypoint: Callable[..., Any], *args: Any) -> Any:
    """Each worker runs this: ``record`` writes its error for the agent, which names the rank that
    failed rather than one that only lost its peer in a collective (that one exits a little later)."""
    from torch.distributed.elastic.multiprocessing.errors import record

    try:
        return record(entrypoint)(*args)
    except Exception as e:
        if any(p in str(e) for p in _PEER_LOST):
            # the agent reports the first process it sees exit: leave that to the rank that failed
            time.sleep(PEER_LOST_GRACE_S)
        raise


#: what a rank says when it lost a peer in a collective: a consequence, not the cause
_PEER_LOST = ("Connection closed by peer", "remote worker crashing", "Connection reset by peer", "Broken pipe")


def failure_line(error: Any, processes: int) -> str:
    """``ChildFailedError`` -> 'rank R of N failed: <its error's last line>', naming the rank that
    failed first. Error files carry whole-second timestamps, so a rank that only lost its peer can tie
    with the one that failed: those are passed over when another rank has its own error."""
    failures = sorted(error.failures.items(), key=lambda kv: (kv[1].timestamp, kv[0]))
    causes = [(r, f) for r, f in failures if not any(p in _message(f) for p in _PEER_LOST)]
    rank_, failure = (causes or failures)[0]
    text = _message(failure).strip()
    text = text.splitlines()[-1] if text else f"exit code {failure.exitcode}"
    return f"training process rank {rank_} of {processes} failed: {text}; the other processes were stopped"


def _message(failure: Any) -> str:
    message = failure.message
    if isinstance(message, dict):  # the error file written by record: {"message": ..., "extraInfo": ...}
        message = message.get("message", message)
    return str(message)


def describe() -> dict[str, Any]:
    """What environment.json records about the processes of a run."""
    return {"world_size": world_size(), "backend": dist.get_backend() if active() else None,
            "launcher": "torchrun/elastic" if active() else None}


# ------------------------------------------------------------------------------ the run's plan
_plan = {"sent": True}


def send_plan(plan: Any) -> None:
    """Rank 0: tell the other ranks what to train (once per call of ``longtail.train``)."""
    if active():
        broadcast(plan)
        _plan["sent"] = True


def receive_plan() -> Any:
    """Ranks > 0: what rank 0 sent (None: nothing to train)."""
    return broadcast(None)


@contextlib.contextmanager
def leading() -> Iterator[None]:
    """Rank 0's side of a train call: when it returns without training (a finished run), the other
    ranks are told so instead of waiting for a plan. On an error the launcher stops them."""
    _plan["sent"] = False
    yield
    if active() and not _plan["sent"]:
        broadcast(None)
    _plan["sent"] = True


# --------------------------------------------------------------------------------- collectives
def eval_indices(n: int) -> Any:
    """This rank's positions of an n-item split (round-robin, padded to equal length): range(n) alone."""
    if not active():
        return range(n)
    from ..data.samplers import DistributedShard

    return list(DistributedShard(range(n), rank(), world_size()))  # type: ignore[arg-type]


def gather_in_order(local: torch.Tensor, n: int) -> torch.Tensor:
    """Undo :func:`eval_indices`: every rank's rows back in dataset order, padding dropped (CPU tensor)."""
    if not active():
        return local
    w = world_size()
    device = collective_device()
    part = local.to(device).contiguous()
    parts = [torch.empty_like(part) for _ in range(w)]
    dist.all_gather(parts, part)
    # rank r holds positions r, r + W, ...: interleaving the ranks row by row restores the order
    stacked = torch.stack(parts, dim=1).reshape(-1, *part.shape[1:])
    return stacked[:n].cpu()


# ---------------------------------------------------------------------------------- the model
def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The module the training step calls: DistributedDataParallel under DDP, ``model`` itself otherwise.

    Built once per stage, after the stage's freezing and head changes (DDP registers the parameters
    that require gradients when it is built)."""
    if not active() or not any(p.requires_grad for p in model.parameters()):
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``train.sync_bn``: BatchNorm statistics over the global batch (torch's SyncBatchNorm, GPU only)."""
    if not active():
        return model  # one process: its batch is the global batch already
    if device.type != "cuda":
        raise ConfigError("train.sync_bn needs CUDA GPUs (torch's SyncBatchNorm does not run on CPU); set train.sync_bn=false")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def per_rank_batch(batch_size: int) -> int:
    """This rank's share of the global ``data.batch_size`` (it must divide by the number of processes)."""
    w = world_size()
    if batch_size % w:
        raise ConfigError(f"data.batch_size={batch_size} is the global batch and must divide by the {w} processes; "
                          f"use a multiple of {w} (e.g. {batch_size - batch_size % w or w})")
    return batch_size // w


def shard(sampler: Any, drop_last: bool) -> Any:
    """This rank's share of a sampler's stream (round-robin; see :class:`longtail.data.samplers.DistributedShard`)."""
    if not active():
        return sampler
    from ..data.samplers import DistributedShard

    return DistributedShard(sampler, rank(), world_size(), drop_last=drop_last)
