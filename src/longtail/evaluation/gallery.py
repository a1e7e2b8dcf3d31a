"""The report's gallery: the test images the model got most confidently wrong, and a sample it got right.

``finalize`` writes ``predictions/errors.npz`` (the most confident errors) and ``predictions/correct.npz``
(a seeded sample of correct predictions per class): uint8 thumbnails N x H x W x C, their sizes, ids,
true and predicted classes, confidence, and, when the run's model can be explained, ``overlays``: the
Grad-CAM map of the predicted class over each image, thumbnailed the same way, with the layer's name
in ``cam_layer``. The report draws them with their labels. Clips keep their middle frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import softmax

log = logging.getLogger("longtail")

ERRORS_FILE = "errors.npz"
CORRECT_FILE = "correct.npz"
THUMBNAIL = 96  # longest side, pixels

#: (decoded uint8 image C x H x W, class) -> its Grad-CAM overlay H x W x 3 uint8 (``evaluation.explain.Explainer``)
Explain = Callable[[Any, int], np.ndarray]


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


def correct_sample(logits: np.ndarray, targets: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Up to ``per_class`` correctly classified labelled rows of each class, drawn at random (seeded), class by class.

    A random draw, not the most confident: the gallery should show what a typical right answer looks
    like, and where the model looked for it."""
    pred = np.asarray(logits).argmax(axis=1)
    y = np.asarray(targets)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(y[y >= 0]):
        right = np.flatnonzero((y == c) & (pred == c))
        picked.extend(sorted(rng.choice(right, size=min(per_class, len(right)), replace=False).tolist()))
    return np.asarray(picked, dtype=np.int64)


def _padded(thumbs: list[np.ndarray]) -> np.ndarray:
    """One N x H x W x C array, each thumbnail at the top left (its size is stored beside it)."""
    h, w = max(t.shape[0] for t in thumbs), max(t.shape[1] for t in thumbs)
    out = np.zeros((len(thumbs), h, w, thumbs[0].shape[2]), dtype=np.uint8)
    for k, t in enumerate(thumbs):
        out[k, : t.shape[0], : t.shape[1]] = t
    return out


def _overlays(images: list[Any], classes: np.ndarray, explain: Explain | None) -> list[np.ndarray] | None:
    """Each image's Grad-CAM overlay as a thumbnail; None (with a warning) when a map cannot be made."""
    if explain is None:
        return None
    import torch

    try:
        return [thumbnail(torch.from_numpy(explain(img, int(c))).permute(2, 0, 1)) for img, c in zip(images, classes)]
    except Exception as e:  # the gallery is an extra: a failed map must never lose a finished run
        log.warning("the report's gallery has no Grad-CAM maps (%s)", e)
        return None


def _save(path: Path, dataset: Any, idx: np.ndarray, logits: np.ndarray, targets: np.ndarray, ids: list[str], explain: Explain | None) -> Path | None:
    from ..rundir import atomic_write  # loads torch: only when writing

    if len(idx) == 0:
        return None
    images = [dataset[int(i)][0] for i in idx]
    thumbs = [thumbnail(img) for img in images]
    probs = softmax(np.asarray(logits, dtype=np.float64)[idx])
    arrays = {"images": _padded(thumbs), "sizes": np.asarray([t.shape[:2] for t in thumbs]), "ids": np.asarray([str(ids[i]) for i in idx]),
              "targets": np.asarray(targets)[idx], "predictions": probs.argmax(axis=1), "confidence": probs.max(axis=1)}
    maps = _overlays(images, arrays["predictions"], explain)
    if maps is not None:
        arrays["overlays"] = _padded(maps)
        arrays["cam_layer"] = np.asarray(getattr(explain, "layer_name", ""))
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))  # a killed write never leaves a half file under the real name
    return path


def save_errors(folder: Path, dataset: Any, logits: np.ndarray, targets: np.ndarray, ids: list[str], count: int = 16,
                explain: Explain | None = None) -> Path | None:
    """Write the ``count`` most confident errors of ``dataset`` to ``folder/errors.npz``; None when there is none."""
    return _save(Path(folder) / ERRORS_FILE, dataset, confident_errors(logits, targets, count), logits, targets, ids, explain)


def save_correct(folder: Path, dataset: Any, logits: np.ndarray, targets: np.ndarray, ids: list[str], per_class: int = 2,
                 seed: int = 0, explain: Explain | None = None) -> Path | None:
    """Write a seeded sample of ``per_class`` correct predictions per class to ``folder/correct.npz``; None when there is none."""
    return _save(Path(folder) / CORRECT_FILE, dataset, correct_sample(logits, targets, per_class, seed), logits, targets, ids, explain)
