"""Where and how a step runs: the device, seeding, autocast precision, the gradient scaler, memory format."""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any

import numpy as np
import torch

from ..core.errors import LongtailError


# ------------------------------------------------------------------------------ environment
def select_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LongtailError("train.device=cuda but no CUDA GPU is visible; use train.device=auto or cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        # deterministic mode also NaN-fills every new tensor (a debugging aid for kernels that read
        # uninitialised memory, which ours do not): about 4 points of a CPU step's time in
        # benchmarks/profile_loop.py, for no change in results
        torch.utils.deterministic.fill_uninitialized_memory = False
        torch.backends.cudnn.benchmark = False


def autocast(device: torch.device, precision: str, model: Any = None) -> contextlib.AbstractContextManager:
    """The autocast context of ``train.precision`` on ``device``; ``auto`` is chosen for ``model`` (engine/precision.py)."""
    if precision == "auto":
        from .precision import resolve_precision

        precision = resolve_precision(precision, device, model)
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise LongtailError("train.precision=bf16 but this GPU has no bfloat16 support; use 16-mixed (fp16 with loss scaling)")
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "16-mixed":
        if device.type != "cuda":
            raise LongtailError("train.precision=16-mixed needs a CUDA GPU; use bf16 or 32 on this device")
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for ``16-mixed`` (fp16 gradients underflow without it); a disabled pass-through otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, parameters: Any, grad_clip: float | None) -> bool:
    """Backward, optional clipping (of the unscaled gradients) and the optimizer step.

    Returns False when the scaler found inf/NaN gradients and skipped the step (it then lowers its
    scale: ``update`` only ever lowers the scale after a skipped step).
    """
    scaler.scale(loss).backward()
    if grad_clip is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    if not scaler.is_enabled():
        optimizer.step()
        return True
    before = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    return scaler.get_scale() >= before


def as_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Image batches (N, C, H, W) in NHWC layout when ``channels_last``; clips and features unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x
