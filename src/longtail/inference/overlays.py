"""``longtail predict ... --explain OUT_DIR``: a Grad-CAM overlay of each input's predicted class.

The target layer is chosen per backbone family (``evaluation.explain.cam_target_layer``; ``eval.cam_layer``
overrides it), and a model Grad-CAM cannot explain (a clip model, SPBL's SVM head) is refused before
any image is scored. Each overlay is written atomically as ``OUT_DIR/<input name>.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


class OverlayWriter:
    """Grad-CAM maps of a batch, blended over the decoded images, saved one PNG per input."""

    def __init__(self, model: nn.Module, cam_layer: str | None, folder: Path) -> None:
        from ..evaluation.explain import cam_target_layer, check_gradient_path, refuse_clips, refuse_metadata

        refuse_clips(model)
        refuse_metadata(model)
        check_gradient_path(model)
        self.model, self.layer, self.folder = model, cam_target_layer(model, cam_layer), Path(folder)
        self.used: set[str] = set()

    def write(self, images: torch.Tensor, x: torch.Tensor, classes: np.ndarray, files: Sequence[Any]) -> None:
        """``images``: the decoded uint8 inputs (N x C x H x W); ``x``: the model's input for them."""
        from ..evaluation.explain import overlays, save_overlay

        for image, f in zip(overlays(self.model, self.layer, images, x, classes), files):
            save_overlay(self._path(f), image)

    def _path(self, f: Any) -> Path:
        """``<stem>.png``; a second input of the same name gets ``<stem>-2.png``, ``-3``, ..."""
        stem, n = Path(f).stem, 1
        name = f"{stem}.png"
        while name in self.used:
            n += 1
            name = f"{stem}-{n}.png"
        self.used.add(name)
        return self.folder / name
