"""Numbers about a dataset: channel statistics, imbalance ratio, Gini coefficient, shot groups."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .dataset import ImageDataset, TensorImageDataset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def channel_mean_std(ds: ImageDataset, max_images: int = 2000, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units over all pixels of ``ds``.

    Uses every image of an in-memory dataset (cheap) and a seeded sample of ``max_images`` of a
    lazy one (decoding a whole large dataset just for statistics would dominate start-up).
    """
    if isinstance(ds, TensorImageDataset):
        images, index = ds.images, ds.index
    else:
        n = len(ds)
        pick = np.sort(np.random.default_rng(seed).permutation(n)[:max_images]) if n > max_images else np.arange(n)
        # a clip (C x T x H x W) counts as one tall image of its frames
        images = torch.stack([ds.load(int(i)).flatten(1, -2) for i in pick])
        index = np.arange(len(images))
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for start in range(0, len(index), 4096):
        chunk = images[torch.from_numpy(index[start : start + 4096])].to(torch.float32).div_(255.0)
        total += chunk.sum((0, 2, 3)).double()
        total_sq += chunk.square().sum((0, 2, 3)).double()
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / max(count, 1)
    std = (total_sq / max(count, 1) - mean.square()).clamp_min(0).sqrt()
    return [float(m) for m in mean], [float(max(s, 1e-6)) for s in std]


def imagenet_stats(channels: int) -> tuple[list[float], list[float]]:
    """ImageNet mean/std; a grey-scale input gets their channel averages."""
    if channels == 3:
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    return [float(np.mean(IMAGENET_MEAN))], [float(np.mean(IMAGENET_STD))]


def imbalance_ratio(counts: Sequence[int]) -> float:
    """max / min class count (inf if a class is empty)."""
    c = np.asarray(counts, dtype=np.float64)
    return float("inf") if c.min() == 0 else float(c.max() / c.min())


def gini(counts: Sequence[int]) -> float:
    """Gini coefficient of the class counts: 0 = balanced, towards 1 = all images in one class."""
    c = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(c)
    if n == 0 or c.sum() == 0:
        return 0.0
    # mean absolute difference / (2 * mean), via the sorted-rank identity
    ranks = np.arange(1, n + 1)
    return float((2.0 * (ranks * c).sum() / (n * c.sum())) - (n + 1.0) / n)


def shot_groups(counts: Sequence[int], thresholds: tuple[int, int] = (100, 20)) -> list[str]:
    """'many' (> many), 'medium' (few..many), 'few' (< few) per class by training count."""
    many, few = thresholds
    return ["many" if n > many else "few" if n < few else "medium" for n in counts]
