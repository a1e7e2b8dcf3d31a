"""``train.precision: auto``: bf16 autocast only where it is known to pay, float32 everywhere else.

The rule, from what the device offers and what the model is made of:

- a CUDA GPU with bfloat16 support: ``bf16`` (tensor cores; the cast costs little next to the matmuls);
- a CPU with AMX (torch's AMX-tile check; ``amx_bf16`` in the facts) and a model that is not depthwise-heavy: ``bf16``
  (AMX tiles speed up dense convolutions and matmuls; depthwise convolutions have no matmul to
  speed up and pay the casts);
- anything else (CPUs without AMX, MPS, a GPU without bfloat16): ``32``.

:func:`choose_precision` is the pure rule on :class:`DeviceFacts`, so the choice can be tested with
made-up devices; :func:`resolve_precision` reads the real facts. The Trainer writes the choice into
every line of metrics.jsonl (``precision``) when the config asked for ``auto``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: a model counts as depthwise-heavy when at least this share of its convolutions are depthwise
DEPTHWISE_HEAVY = 0.25


@dataclass(frozen=True)
class DeviceFacts:
    """What the choice depends on: the device type, CUDA's bfloat16 support, the CPU's flags."""

    type: str  # "cuda", "cpu", "mps"
    cuda_bf16: bool = False
    cpu_flags: frozenset[str] = frozenset()


def choose_precision(facts: DeviceFacts, depthwise_share: float) -> tuple[str, str]:
    """(precision, why) for ``auto``: ``bf16`` or ``32``."""
    if facts.type == "cuda":
        if facts.cuda_bf16:
            return "bf16", "CUDA GPU with bfloat16 support"
        return "32", "this CUDA GPU has no bfloat16 support"
    if facts.type == "cpu":
        if "amx_bf16" not in facts.cpu_flags:
            return "32", "this CPU has no AMX (amx_bf16), where bf16 autocast is not faster"
        if depthwise_share >= DEPTHWISE_HEAVY:
            return "32", f"CPU with AMX, but {depthwise_share:.0%} of the model's convolutions are depthwise, which AMX does not speed up"
        return "bf16", "CPU with AMX (amx_bf16) and a model that is not depthwise-heavy"
    return "32", f"bf16 autocast is not chosen automatically on {facts.type}"


def depthwise_share(model: nn.Module | None) -> float:
    """Share of the model's convolutions that are depthwise (groups == input channels > 1); 0 without convolutions."""
    if model is None:
        return 0.0
    convs = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if not convs:
        return 0.0
    return sum(1 for m in convs if m.groups > 1 and m.groups == m.in_channels) / len(convs)


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles, as torch's own CPU-capability check reports it (False where torch cannot tell)."""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check()) if check is not None else False


def device_facts(device: torch.device) -> DeviceFacts:
    if device.type == "cuda":
        return DeviceFacts("cuda", cuda_bf16=bool(torch.cuda.is_bf16_supported()))
    if device.type == "cpu":
        return DeviceFacts("cpu", cpu_flags=frozenset({"amx_bf16"}) if cpu_has_amx() else frozenset())
    return DeviceFacts(device.type)


def resolve_precision(precision: str, device: torch.device, model: nn.Module | None = None) -> str:
    """``train.precision`` as it runs on ``device``: ``auto`` chosen by :func:`choose_precision`, any other value as given."""
    if precision != "auto":
        return precision
    return choose_precision(device_facts(device), depthwise_share(model))[0]


def explain_precision(device: torch.device, model: nn.Module | None = None) -> str:
    """What ``auto`` chose on ``device`` for ``model`` and why, for the log."""
    chosen, why = choose_precision(device_facts(device), depthwise_share(model))
    return f"train.precision auto: {chosen} ({why})"
