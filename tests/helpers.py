"""Tiny configs shared by the end-to-end tests (digits, small CNN: seconds on one core)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tiny_config(tmp_path: Path, name: str = "run", **sections: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "output_dir": str(tmp_path / "runs"),
        "seed": 0,
        "data": {
            "source": {"name": "digits"},
            "long_tail": {"recipe": "ldam", "imbalance_ratio": 10},
            "split": {"val": 0.2, "test": 0.2},
            "train_transforms": [{"name": "random_crop", "size": 8, "padding": 1}],
            "batch_size": 32,
            "cache": False,
        },
        "model": {"name": "small_cnn"},
        "optimizer": {"name": "sgd", "lr": 0.05},
        "schedule": {"name": "cosine"},
        "train": {"epochs": 2, "progress": False, "tensorboard": False},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def decoupled_config(tmp_path: Path, name: str, **second_stage: Any) -> dict[str, Any]:
    """Two stages of 2 epochs: plain representation learning, then ``second_stage`` (cRT, LWS, ...)."""
    stage2 = {"name": name, "epochs": 2, **second_stage}
    return tiny_config(tmp_path, name=name, stages=[{"name": "representation", "epochs": 2}, stage2])


def weights_after_each_stop(cfg: dict[str, Any], stops: list[int | None]) -> tuple[Path, list[dict[str, Any]]]:
    """Train, pausing after each epoch count in ``stops`` (None = to the end); the model state at every pause."""
    import longtail
    from longtail import rundir
    from longtail.rundir.checkpoint import load_checkpoint

    run_dir = longtail.train(cfg, stop_after=stops[0]).run_dir
    states = [load_checkpoint(run_dir / rundir.LAST)["model"]]
    for stop in stops[1:]:
        longtail.train(resume=run_dir, stop_after=stop)
        states.append(load_checkpoint(run_dir / rundir.LAST)["model"])
    return run_dir, states


def value_and_grad(fn: Any, logits: Any) -> tuple[float, Any]:
    """A loss's value and its gradient w.r.t. a fresh leaf copy of ``logits`` (float64 gradient)."""
    import torch

    z = logits.clone().requires_grad_(True)
    out = fn(z)
    (grad,) = torch.autograd.grad(out, z)
    return float(out.detach()), grad.double()
