"""Which pretrained weights a run starts from, for ``environment.json``.

A number is only reproducible if the starting weights are known byte for byte, so every form
(a packaged source, a local file, hub weights) is recorded with the file's sha256. It is computed
before the data is built: a missing package or file fails in seconds, not after decoding.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import LongtailError

if TYPE_CHECKING:
    from ..core.schema import ModelConfig


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_record(cfg: "ModelConfig") -> dict[str, Any] | None:
    """``{source, file, sha256, ...}`` for the run's pretrained weights; None for a random start."""
    if isinstance(cfg.pretrained, str):
        from .packaged import get_source

        source = get_source(cfg.pretrained)
        source.check_model(cfg.name, cfg.kwargs)
        path = source.file()
        return {
            "source": "packaged",
            "name": source.name,
            "package": source.distribution,
            "package_version": source.version(),
            "file": str(path),
            "sha256": sha256_file(path),
        }
    if cfg.weights:
        path = Path(cfg.weights).expanduser()
        if not path.is_file():
            raise LongtailError(f"model.weights: file '{path}' not found; pass an existing .pt/.pth/.safetensors weight file")
        return {"source": "file", "file": str(path.resolve()), "sha256": sha256_file(path)}
    if cfg.pretrained:
        arch = cfg.kwargs.get("arch")
        cached = _hub_cache_file(cfg.name, arch)
        return {
            "source": "hub",
            "model": cfg.name,
            "arch": arch,
            "file": str(cached) if cached else None,
            "sha256": sha256_file(cached) if cached else None,  # None: not in the local cache before this run downloaded it
        }
    return None


def _hub_cache_file(name: str, arch: Any) -> Path | None:
    """The cached download of torchvision's default weights for ``arch``, if it is there already."""
    if name != "torchvision" or not isinstance(arch, str):
        return None
    import torch.hub
    import torchvision.models as tvm

    try:
        url = tvm.get_model_weights(arch).DEFAULT.url  # type: ignore[attr-defined]
    except (ValueError, AttributeError, KeyError):
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    return path if path.is_file() else None
