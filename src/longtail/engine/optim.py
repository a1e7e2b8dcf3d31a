"""Optimizers with per-parameter-group lr multipliers and weight-decay exclusions, and epoch-wise lr schedules.

Schedules are pure functions of the stage-local epoch, so resuming needs no scheduler state: the
lr of epoch ``e`` is recomputed from the config, which makes 'train N epochs' and 'train k epochs,
resume for N-k' identical by construction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from ..core.schema import MaxNormConfig, OptimizerConfig, ScheduleConfig

_NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def _norm_param_names(model: nn.Module) -> set[str]:
    names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, _NORM_LAYERS):
            for p_name, _ in module.named_parameters(recurse=False):
                names.add(f"{module_name}.{p_name}" if module_name else p_name)
    return names


def param_groups(model: nn.Module, cfg: OptimizerConfig) -> list[dict]:
    """Group trainable parameters by (lr multiplier, weight decay on/off).

    ``lr_mult`` maps a parameter-name prefix (e.g. ``backbone``) to a multiplier; the longest
    matching prefix wins. ``no_decay`` keys exclude parameters from weight decay: ``bias`` matches
    names ending in ``bias``, ``norm`` matches every parameter of a normalisation layer, any other
    key matches as a substring of the name.
    """
    norm_names = _norm_param_names(model) if "norm" in cfg.no_decay else set()
    groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    names: dict[tuple[float, bool], list[str]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        mult = 1.0
        best = -1
        for prefix, m in cfg.lr_mult.items():
            if name.startswith(prefix) and len(prefix) > best:
                mult, best = m, len(prefix)
        decay = not _excluded(name, cfg.no_decay, norm_names)
        key = (mult, decay)
        groups.setdefault(key, []).append(param)
        names.setdefault(key, []).append(name)
    return [
        {"params": params, "lr_mult": mult, "weight_decay": cfg.weight_decay if decay else 0.0, "param_names": names[(mult, decay)]}
        for (mult, decay), params in groups.items()
    ]


def _excluded(name: str, keys: Iterable[str], norm_names: set[str]) -> bool:
    for key in keys:
        if key == "bias" and name.endswith("bias"):
            return True
        if key == "norm" and name in norm_names:
            return True
        if key not in ("bias", "norm") and key in name:
            return True
    return False


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The stage's optimizer over :func:`param_groups`; with ``head_max_norm`` it also holds MaxNorm's bound
    and projects the head after every step where asked (:func:`attach_head_max_norm`)."""
    groups = param_groups(model, cfg)
    if not groups:
        from ..core.errors import ConfigError

        raise ConfigError("no trainable parameters in this stage; unfreeze something (freeze_backbone with a frozen head?)")
    for g in groups:
        g["lr"] = cfg.lr * g["lr_mult"]
        g["initial_lr"] = g["lr"]
    optimizer = _make_optimizer(groups, cfg)
    if cfg.head_max_norm is not None:
        attach_head_max_norm(optimizer, model, cfg.head_max_norm)
    return optimizer


#: the param-group key holding MaxNorm's bound, so that the optimizer's state_dict (last.pt) keeps it across a resume
MAX_NORM_KEY = "head_max_norm"


def attach_head_max_norm(optimizer: torch.optim.Optimizer, model: nn.Module, cfg: MaxNormConfig) -> float:
    """Weight balancing's MaxNorm as projected gradient descent on the model's linear head. A relative bound t
    is taken from the head as it is now (the stage's start) and kept in the param groups, so a resumed stage
    reloads it with the optimizer state instead of recomputing it. ``every: step`` projects after every
    ``optimizer.step()`` (torch's step post-hook, so a step GradScaler skips projects nothing); ``every: epoch``
    leaves it to the loop, which calls :func:`project_head` after each epoch's batches. Returns t."""
    from ..core.errors import ConfigError
    from ..models.heads import LinearHead, max_norm_threshold

    head = getattr(model, "head", None)
    weight = getattr(head, "weight", None)
    if type(head) is not LinearHead or not isinstance(weight, nn.Parameter) or not weight.requires_grad:
        kind = type(head).__name__ if head is not None else "none"
        raise ConfigError(f"optimizer.head_max_norm constrains the class rows of a trainable linear head; this stage's head is {kind} "
                          "(use model.head: linear, and a stage that trains the head)")
    threshold = max_norm_threshold(weight, cfg.thresh, cfg.relative)
    for g in optimizer.param_groups:
        g[MAX_NORM_KEY] = threshold
    if cfg.every == "step":
        optimizer.register_step_post_hook(lambda opt, args, kwargs: project_head(model, opt))
    return threshold


def project_head(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Project each class row of ``model.head`` onto the ball of the bound :func:`attach_head_max_norm` stored."""
    from ..models.heads import max_norm_project

    weight = model.head.weight  # type: ignore[union-attr]
    with torch.no_grad():
        weight.copy_(max_norm_project(weight, float(optimizer.param_groups[0][MAX_NORM_KEY])))


def _make_optimizer(groups: list[dict], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    if cfg.name == "nadam":  # MBIT's OPTIMIZER.TYPE NADAM: Adam with Nesterov momentum, L2 weight decay as Adam
        return torch.optim.NAdam(groups, lr=cfg.lr, betas=cfg.betas)
    return torch.optim.RMSprop(groups, lr=cfg.lr, momentum=cfg.momentum)


def lr_factor(epoch: int, total_epochs: int, cfg: ScheduleConfig, base_lr: float) -> float:
    """Multiplier of the base lr at stage-local epoch ``epoch`` (0-based).

    ``cfg.epoch_offset`` shifts the stage into a longer schedule: epoch e of a stage of n epochs is
    epoch e + offset of a schedule of n + offset epochs.
    """
    epoch, total_epochs = epoch + cfg.epoch_offset, total_epochs + cfg.epoch_offset
    warm = cfg.warmup_epochs
    if warm and epoch < warm:
        if cfg.warmup_start is None:
            return (epoch + 1) / warm
        return cfg.warmup_start + (1.0 - cfg.warmup_start) * epoch / warm
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "multistep":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    if cfg.name == "cosine":
        span = max(1, total_epochs - warm)
        t = min(1.0, (epoch - warm) / span)
        floor = cfg.min_lr / base_lr
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    # cyclic, torch's CyclicLR mode triangular2 (amplitude halves every cycle, step_size_up =
    # step_size_down = cycle_epochs), stepped once per epoch as in HMLoss; lr is max_lr, base_lr the floor
    half = cfg.cycle_epochs
    cycle = math.floor(1 + epoch / (2 * half))
    x = abs(epoch / half - 2 * cycle + 1)
    low = cfg.base_lr / base_lr
    return low + (1.0 - low) * max(0.0, 1.0 - x) / (2 ** (cycle - 1))


def set_epoch_lr(optimizer: torch.optim.Optimizer, epoch: int, total_epochs: int, cfg: ScheduleConfig, base_lr: float) -> float:
    """Set every group's lr for this epoch; returns the factor (for logging)."""
    factor = lr_factor(epoch, total_epochs, cfg, base_lr)
    for g in optimizer.param_groups:
        g["lr"] = g["initial_lr"] * factor
    return factor
