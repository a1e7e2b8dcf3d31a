"""Training steps: how one batch becomes a loss. ``standard`` serves almost every method; BBN
needs a second, re-balanced batch and a mixed forward pass, so it is its own step; BCL needs more
augmented views of the same batch and the model's contrastive branch, so it is one too."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..core.errors import ConfigError, LongtailError
from ..core.registry import METHODS
from . import distributed
from .batches import iterate_batches, meta_kwargs, stage_size
from .device import as_memory_format


def default_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Any, mixing: Any = None, trainer: Any = None,
                 meta: torch.Tensor | None = None) -> torch.Tensor:
    """One forward + loss, with optional label mixing (mixup/cutmix/remix).

    ``meta`` (``model.metadata`` runs only) goes to the model beside the images; under mixing each mixed
    image keeps the metadata of its own first image (the one ``y_a`` labels)."""
    needs_features = getattr(loss_fn, "needs_features", False)
    if mixing is not None:
        x, y_a, y_b, lam = mixing(x, y)
        logits, feats, extra = model_outputs(model, x, loss_fn, meta)
        f = feats if needs_features else None
        return loss_fn(logits, y_a, f, sample_weight=lam, **extra) + loss_fn(logits, y_b, f, sample_weight=1 - lam, **extra)
    logits, feats, extra = model_outputs(model, x, loss_fn, meta)
    return loss_fn(logits, y, feats if needs_features else None, **extra)


def model_outputs(model: nn.Module, x: torch.Tensor, loss_fn: Any, meta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The logits and features for the loss, and ``experts=`` (N x E x C) when the loss trains a multi-expert
    model's experts (``needs_experts``: RIDE), with ``router=`` (N x (E - 1)) for RIDE's router stage
    (``needs_router``); the model is asked for them only then (models/experts.py)."""
    if getattr(loss_fn, "needs_experts", False):
        out = model(x, return_features=True, return_experts=True, **meta_kwargs(meta))
        extra = {"experts": out.experts, **({"router": out.router} if getattr(loss_fn, "needs_router", False) else {})}
        return out.logits, out.features, extra
    logits, feats = model(x, return_features=True, **meta_kwargs(meta))
    return logits, feats, {}


@METHODS.register("standard")
class StandardStep:
    """One forward pass and the stage's loss (with optional mixup / cutmix / remix)."""

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Any, mixing: Any = None, trainer: Any = None,
                 meta: torch.Tensor | None = None) -> torch.Tensor:
        return default_step(model, x, y, loss_fn, mixing, meta=meta)


@METHODS.register("bbn")
class BBNStep:
    """BBN (Zhou et al., CVPR 2020): a second batch from a re-balancing sampler feeds the second branch.

    The mixing weight follows the cumulative schedule alpha = 1 - ((epoch - 1) / D)^2 with 1-based
    epochs e of E (seeds.md 2.5; :func:`longtail.models.bbn.bbn_alpha`); the loss is
    alpha * L(z, y_a) + (1 - alpha) * L(z, y_b). Inference concatenates both branches without mixing
    (``BBNClassifier.forward``).

    ``alpha_divisor``: ``bbn`` (default) = Megvii-Nanjing/BBN lib/core/combiner.py, D = 100 * (E // 100 + 1)
    when E is 90 or 180 (its iNaturalist configs: 180 -> 200), else E; ``epochs`` = D is E.
    ``alpha_last_epoch``: ``parabola`` (default, BBN) = the formula in every epoch; ``zero`` =
    yaopengUSTC/mbit-skin-cancer lib/core/combiner.py, alpha 0 in the last epoch.
    """

    def __init__(self, sampler: str = "reverse", alpha_divisor: Literal["bbn", "epochs"] = "bbn",
                 alpha_last_epoch: Literal["parabola", "zero"] = "parabola") -> None:
        from ..models.bbn import ALPHA_DIVISORS, ALPHA_LAST_EPOCH

        for key, value, valid in (("alpha_divisor", alpha_divisor, ALPHA_DIVISORS), ("alpha_last_epoch", alpha_last_epoch, ALPHA_LAST_EPOCH)):
            if value not in valid:
                raise ConfigError(f"method bbn: {key} '{value}' is not one of {', '.join(valid)}")
        self.sampler_name = sampler
        self.alpha_divisor = alpha_divisor
        self.alpha_last_epoch = alpha_last_epoch
        self.alpha = 1.0
        self._batches: Any = None
        self._epoch = 0

    def on_epoch_start(self, epoch: int, max_epoch: int) -> None:
        from ..models.bbn import bbn_alpha

        self.alpha = bbn_alpha(epoch, max_epoch, self.alpha_divisor, self.alpha_last_epoch)
        self._epoch = epoch
        self._batches = None

    def _second_batch(self, trainer: Any, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        from ..core.schema import Component
        from ..data.samplers import build_sampler

        if self._batches is None:
            targets = np.asarray(trainer.bundle.train.targets)
            sampler = build_sampler(Component(name=self.sampler_name), targets, trainer.cfg.seed + 1)
            sampler = distributed.shard(sampler, drop_last=False)  # this rank's share, as for the main batch
            sampler.set_epoch(trainer.progress.global_epoch)
            self._batches = iterate_batches(trainer.train_set, sampler, size, trainer.cfg.data.num_workers, seed=trainer.cfg.seed + 7 + self._epoch)
        try:
            return next(self._batches)
        except StopIteration:
            self._batches = None
            return self._second_batch(trainer, size)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Any, mixing: Any = None, trainer: Any = None) -> torch.Tensor:
        if not hasattr(getattr(model, "module", model), "forward_mixed"):  # .module: under DDP
            raise ConfigError("method 'bbn' needs a BBN model; set model.name=bbn_resnet32, bbn_resnet10, bbn_torchvision or bbn_timm")
        xb, yb = self._second_batch(trainer, len(y))
        xb = trainer.train_pipeline.batch(xb.to(x.device))
        yb = yb.to(y.device)
        n = min(len(y), len(yb))
        logits = model(x[:n], mix_with=xb[:n], alpha=self.alpha)
        return self.alpha * loss_fn(logits, y[:n]) + (1 - self.alpha) * loss_fn(logits, yb[:n])


@METHODS.register("bcl")
class BCLStep:
    """BCL (Zhu et al., CVPR 2022): the batch plus ``views`` more draws of the train pipeline, one forward pass.

    FlamieZhu/Balanced-Contrastive-Learning ``main.py`` ``train``: three views of each image go through the
    model as one batch (BatchNorm sees all three); the first view's logits feed the CE term, the other two
    views' projections and the class centres the balanced contrastive term (``bcl`` loss). Here the first
    view is the batch the loop made, and the contrastive views are ``views`` further draws of the stage's
    batched train pipeline (``data.train_transforms``) on the same raw images, so the per-sample transforms,
    run once in the Dataset, are shared by every view. The loop hands this step the raw batch because it
    sets ``needs_raw_batch``. A loss without ``needs_contrast`` (a cRT stage after BCL) gets the standard step.
    """

    #: the loop passes ``raw=`` (the batch as drawn, on the device, before the batched transforms)
    needs_raw_batch = True

    def __init__(self, views: int = 2) -> None:
        if not 1 <= int(views) <= 16:
            raise ConfigError(f"method bcl: views is the number of contrastive views per image (BCL's 2), between 1 and 16; got {views}")
        self.views = int(views)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Any, mixing: Any = None, trainer: Any = None,
                 meta: torch.Tensor | None = None, raw: torch.Tensor | None = None) -> torch.Tensor:
        if not getattr(loss_fn, "needs_contrast", False):
            return default_step(model, x, y, loss_fn, mixing, meta=meta)
        if mixing is not None:
            raise ConfigError("method bcl: label mixing does not combine with the contrastive views (a mixed image has two classes); "
                              "remove train.mixing (and the stage's mixing)")
        if raw is None or trainer is None:
            raise LongtailError("method bcl draws its contrastive views from the raw batch and the train pipeline; train through longtail.train "
                                "(the loop passes raw= and trainer=)")
        channels_last = bool(trainer.cfg.train.channels_last)
        # each view at the batch's size (a stage with image_size trains smaller: stages[].image_size)
        drawn = (trainer.train_pipeline.batch(raw) for _ in range(self.views))
        views = [as_memory_format(v if v.shape[-2:] == x.shape[-2:] else stage_size(v, int(x.shape[-1])), channels_last) for v in drawn]
        repeat = 1 + self.views
        meta_all = None if meta is None else torch.cat([meta] * repeat)
        out = model(torch.cat([x, *views]), return_features=True, return_contrast=True, **meta_kwargs(meta_all))
        n = len(y)
        projections = out.projections[n:].reshape(self.views, n, -1).transpose(0, 1)  # N x V x d
        features = out.features[:n] if getattr(loss_fn, "needs_features", False) else None
        return loss_fn(out.logits[:n], y, features, projections=projections, centers=out.centers)
