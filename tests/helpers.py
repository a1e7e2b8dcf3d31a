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
