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
from torch.nn import functional as F


class OverlayWriter:
    """Grad-CAM maps of a batch, blended over the decoded images, saved one PNG per input."""

    def __init__(self, model: nn.Module, cam_layer: str | None, folder: Path) -> None:
        from ..evaluation.explain import cam_target_layer, check_gradient_path, refuse_clips

        refuse_clips(model)
        check_gradient_path(model)
        self.model, self.layer, self.folder = model, cam_target_layer(model, cam_layer), Path(folder)
        self.used: set[str] = set()

    def write(self, images: torch.Tensor, x: torch.Tensor, classes: np.ndarray, files: Sequence[Any]) -> None:
        """``images``: the decoded uint8 inputs (N x C x H x W); ``x``: the model's input for them."""
        from ..evaluation.explain import grad_cams, overlay, save_overlay

        maps = grad_cams(self.model, x, [int(c) for c in classes], self.layer)
        for image, cam, f in zip(images.cpu(), maps, files):
            if tuple(cam.shape) != tuple(image.shape[-2:]):  # an eval crop: the map covers the model's input, drawn over the whole image
                cam = F.interpolate(torch.from_numpy(cam)[None, None], size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)[0, 0].numpy()
            save_overlay(self._path(f), overlay(image, np.clip(cam, 0.0, 1.0)))

    def _path(self, f: Any) -> Path:
        """``<stem>.png``; a second input of the same name gets ``<stem>-2.png``, ``-3``, ..."""
        stem, n = Path(f).stem, 1
        name = f"{stem}.png"
        while name in self.used:
            n += 1
            name = f"{stem}-{n}.png"
        self.used.add(name)
        return self.folder / name
