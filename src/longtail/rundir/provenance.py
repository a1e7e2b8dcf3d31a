"""What ran, where: the seed, package versions, git revision, machine and command recorded in ``environment.json``."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

_PACKAGES = ("longtail", "torch", "torchvision", "numpy", "scikit-learn", "imbalanced-learn", "timm", "pydantic")


def environment(seed: int, weights: dict[str, Any] | None = None) -> dict[str, Any]:
    """Seed, package versions, git revision, machine and starting weights: enough to say what produced a number.

    ``weights`` is the pretrained-weights record (source, file, sha256; see
    ``longtail.models.provenance``), None for a random start.
    """
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "seed": seed,
        "packages": versions,
        "python": sys.version.split()[0],
        "git_revision": git_revision(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "command": " ".join(sys.argv),
        "weights": weights,
    }


def cpu_model() -> str | None:
    """The CPU's model name (/proc/cpuinfo on Linux, else the platform's processor string), None where neither says.

    Timings and even float results differ between CPUs (AMX kernels, vector widths), so every run names its CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def git_revision() -> str | None:
    """The revision of the longtail checkout (with '+dirty' when modified), or None outside git."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None
