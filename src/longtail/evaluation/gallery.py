"""The most confident errors of a split, kept as thumbnails so the report can show them.

``finalize`` writes ``predictions/errors.npz`` (uint8 thumbnails N x H x W x C, ids, true and
predicted classes, confidence) from the test images the model got wrong with the highest
probability; the report draws them with their labels. Clips keep their middle frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import softmax

ERRORS_FILE = "errors.npz"
THUMBNAIL = 96  # longest side, pixels


def confident_errors(logits: np.ndarray, targets: np.ndarray, count: int) -> np.ndarray:
    """Indices of misclassified labelled rows, highest predicted probability first (at most ``count``)."""
    probs = softmax(np.asarray(logits, dtype=np.float64))
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero((targets >= 0) & (pred != targets))
    order = np.argsort(-probs[wrong, pred[wrong]], kind="stable")
    return wrong[order[:count]]


def thumbnail(image: Any, size: int = THUMBNAIL) -> np.ndarray:
    """A uint8 C x H x W (or C x T x H x W clip: its middle frame) tensor as H x W x C, longest side ``size``."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(image)
    if x.dim() == 4:
        x = x[:, x.shape[1] // 2]
    h, w = x.shape[-2:]
    scale = size / max(h, w)
    if scale < 1:
        x = F.interpolate(x[None].float(), size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear", antialias=True, align_corners=False)[0]
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x.permute(1, 2, 0).numpy()


def save_errors(folder: Path, dataset: Any, logits: np.ndarray, targets: np.ndarray, ids: list[str], count: int = 16) -> Path | None:
    """Write the ``count`` most confident errors of ``dataset`` to ``folder/errors.npz``; None when there is none."""
    from ..rundir import atomic_write  # loads torch: only when writing

    idx = confident_errors(logits, targets, count)
    if len(idx) == 0:
        return None
    thumbs = [thumbnail(dataset[int(i)][0]) for i in idx]
    h, w = max(t.shape[0] for t in thumbs), max(t.shape[1] for t in thumbs)
    images = np.zeros((len(thumbs), h, w, thumbs[0].shape[2]), dtype=np.uint8)
    for k, t in enumerate(thumbs):  # pad to one shape (top-left), sizes kept for drawing
        images[k, : t.shape[0], : t.shape[1]] = t
    probs = softmax(np.asarray(logits, dtype=np.float64)[idx])
    arrays = {"images": images, "sizes": np.asarray([t.shape[:2] for t in thumbs]), "ids": np.asarray([str(ids[i]) for i in idx]),
              "targets": np.asarray(targets)[idx], "predictions": probs.argmax(axis=1), "confidence": probs.max(axis=1)}
    path = Path(folder) / ERRORS_FILE
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))  # a killed write never leaves a half file under the real name
    return path
