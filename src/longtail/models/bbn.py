"""BBN: bilateral-branch network with cumulative learning (Zhou et al. 2020; MBIT, seeds.md 2.5).

The backbone is a shared trunk (stem + every stage but the last) feeding two copies of the last
stage: the *conventional* branch sees instance-sampled images, the *re-balancing* branch
reverse-sampled ones. During training the pooled branch features are mixed as
``concat(2*alpha*f_a, 2*(1-alpha)*f_b)`` with ``alpha = 1 - ((epoch - 1) / D)^2`` (1-based
epochs, as the engine's ``on_epoch_start`` hooks, BBN and MBIT count them) and fed to one linear
head on 2D features. ``D`` is the number of epochs ``E``, except that the official BBN combiner
(``lib/core/combiner.py``) divides by ``100 * (E // 100 + 1)`` when ``E`` is 90 or 180 (``divisor="bbn"``,
the default; ``"epochs"``: always ``E``); MBIT's combiner sets alpha to 0 in the last epoch
(``last_epoch="zero"``; default ``"parabola"``, BBN's). See :func:`bbn_alpha`.
Inference concatenates both branches' features of the same image without weighting.

The two branches are initialised independently, as in BBN, not as copies of one another (with
pretrained weights both start from the same pretrained last stage). In the official CIFAR ResNet-32
only the last block of the last stage is duplicated; MBIT (and this module) duplicate the whole
last stage. Any staged backbone works: the CIFAR ResNet-32, ResNet-10, and torchvision or timm
ResNets and RegNets (``bbn_torchvision``, ``bbn_timm``), as MBIT's ``BACKBONE.BBN`` allows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..core.errors import ConfigError
from ..core.registry import MODELS
from .classifier import Classifier
from .dropblock import DropBlock2d
from .resnet import make_resnet10, make_resnet32
from .staged import StagedBackbone, global_pool

Branch = Literal["conventional", "rebalancing"]


#: how the parabola's divisor follows the epoch count E: bbn = BBN's combiner (100 * (E // 100 + 1) for E in 90, 180), epochs = E
ALPHA_DIVISORS = ("bbn", "epochs")
#: alpha in the last epoch: parabola = the formula (BBN), zero = 0 (MBIT's combiner)
ALPHA_LAST_EPOCH = ("parabola", "zero")


def bbn_alpha_divisor(max_epoch: int, divisor: str = "bbn") -> int:
    """The ``D`` of ``alpha = 1 - ((epoch - 1) / D)^2`` for ``max_epoch`` epochs.

    ``"bbn"``: Megvii-Nanjing/BBN ``lib/core/combiner.py`` (``div_epoch = 100 * (E // 100 + 1)`` when
    ``E`` is 90 or 180, e.g. its iNaturalist configs' 180 epochs -> 200; else ``E``); ``"epochs"``: ``E``
    (the paper's ``T_max``, MBIT's combiner).
    """
    if divisor not in ALPHA_DIVISORS:
        raise ConfigError(f"BBN alpha divisor '{divisor}' is not one of {', '.join(ALPHA_DIVISORS)}")
    if divisor == "bbn" and max_epoch in (90, 180):
        return 100 * (max_epoch // 100 + 1)
    return max_epoch


def bbn_alpha(epoch: int, max_epoch: int, divisor: str = "bbn", last_epoch: str = "parabola") -> float:
    """Cumulative-learning weight of the conventional branch at 1-based ``epoch`` of ``max_epoch``:
    1 at the first epoch, falling parabolically as ``1 - ((epoch - 1) / D)^2`` with ``D`` from
    :func:`bbn_alpha_divisor`. ``last_epoch="zero"``: 0 from the last epoch on (MBIT's combiner:
    ``l = 0`` unless ``epoch < max_epoch``)."""
    if last_epoch not in ALPHA_LAST_EPOCH:
        raise ConfigError(f"BBN alpha last_epoch '{last_epoch}' is not one of {', '.join(ALPHA_LAST_EPOCH)}")
    if max_epoch <= 0:
        return 1.0
    if last_epoch == "zero" and epoch >= max_epoch:
        return 0.0
    return 1.0 - (min(max(epoch - 1, 0), max_epoch) / bbn_alpha_divisor(max_epoch, divisor)) ** 2


class BilateralBackbone(nn.Module):
    """Shared trunk + conventional and re-balancing copies of the last stage; ``forward`` concatenates both."""

    def __init__(
        self,
        make_base: Callable[[], StagedBackbone],
        drop_block_prob: float = 0.0,
        drop_block_size: int = 5,
        drop_block_steps: int = 0,
    ) -> None:
        super().__init__()
        trunk: Any = make_base()
        self.arch = f"bbn_{trunk.arch}"
        self.branch_dim = int(trunk.feature_dim)  # the last stage's width: what each branch pools
        conventional = trunk.pop_last_stage()
        rebalancing = make_base().pop_last_stage()
        # BBN training runs the trunk twice per step (once per branch), so its ramp is twice as long
        trunk_steps = 2 * drop_block_steps if drop_block_steps > 1 else drop_block_steps
        trunk.add_drop_blocks(drop_block_prob, drop_block_size, trunk_steps, count=1)
        self.trunk = trunk
        self.conventional = conventional
        self.rebalancing = rebalancing
        self.conventional_drop = _maybe_drop_block(drop_block_prob, drop_block_size, drop_block_steps)
        self.rebalancing_drop = _maybe_drop_block(drop_block_prob, drop_block_size, drop_block_steps)
        self.feature_dim = 2 * self.branch_dim

    def branch_features(self, x: Tensor, branch: Branch) -> Tensor:
        """Pooled features of one branch (N x branch_dim)."""
        maps = self.trunk.forward_maps(x)
        if branch == "conventional":
            return global_pool(self.conventional_drop(self.conventional(maps)))
        return global_pool(self.rebalancing_drop(self.rebalancing(maps)))

    def forward(self, x: Tensor) -> Tensor:
        maps = self.trunk.forward_maps(x)
        f_c = global_pool(self.conventional_drop(self.conventional(maps)))
        f_r = global_pool(self.rebalancing_drop(self.rebalancing(maps)))
        return torch.cat([f_c, f_r], dim=1)


def _maybe_drop_block(prob: float, size: int, steps: int) -> nn.Module:
    return DropBlock2d(prob, size, steps) if prob > 0 else nn.Identity()


class BBNClassifier(Classifier):
    """BBN model: ``forward`` for inference, ``forward_mixed(x_a, x_b, alpha)`` for cumulative-learning training."""

    backbone: BilateralBackbone

    def __init__(self, backbone: BilateralBackbone, num_classes: int, **kwargs: object) -> None:
        super().__init__(backbone, num_classes, **kwargs)  # type: ignore[arg-type]
        self.alpha = 1.0

    def forward(self, x: Tensor, return_features: bool = False, mix_with: Tensor | None = None, alpha: float = 1.0,
                return_experts: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Inference on ``x``; with ``mix_with``, the mixed training forward (through ``forward`` so that a
        DistributedDataParallel wrapper sees the call and averages the gradients). ``return_experts``: refused
        in one line by :func:`~longtail.models.experts.expert_output` (BBN has one head)."""
        if mix_with is not None:
            return self.forward_mixed(x, mix_with, alpha)
        return super().forward(x, return_features, return_experts=return_experts)  # type: ignore[return-value]

    def forward_mixed(self, x_a: Tensor, x_b: Tensor, alpha: float) -> Tensor:
        """Logits of ``concat(2*alpha*f_conv(x_a), 2*(1-alpha)*f_rebal(x_b))``."""
        f_a = self.backbone.branch_features(x_a, "conventional")
        f_b = self.backbone.branch_features(x_b, "rebalancing")
        mixed = torch.cat([2.0 * alpha * f_a, 2.0 * (1.0 - alpha) * f_b], dim=1)
        return self.head(self.dropout(mixed))

    def on_epoch_start(self, epoch: int, max_epoch: int) -> None:
        """Set ``alpha`` for this 1-based epoch by the default rules (informative: the BBN training step
        passes its own alpha, with its ``alpha_divisor`` / ``alpha_last_epoch``)."""
        self.alpha = bbn_alpha(epoch, max_epoch)


@MODELS.register("bbn_resnet32")
def bbn_resnet32(
    in_channels: int = 3, drop_block_prob: float = 0.0, drop_block_size: int = 5, drop_block_steps: int = 0
) -> BilateralBackbone:
    """BBN on CIFAR ResNet-32: shared 16/32 stages, two 64-wide last stages (128-d features)."""
    return BilateralBackbone(lambda: make_resnet32(in_channels), drop_block_prob, drop_block_size, drop_block_steps)


@MODELS.register("bbn_resnet10")
def bbn_resnet10(
    in_channels: int = 3,
    small_input: bool = False,
    drop_block_prob: float = 0.0,
    drop_block_size: int = 5,
    drop_block_steps: int = 0,
) -> BilateralBackbone:
    """BBN on ResNet-10: shared stem and 64/128/256 stages, two 512-wide last stages (1024-d features)."""
    return BilateralBackbone(lambda: make_resnet10(in_channels, small_input), drop_block_prob, drop_block_size, drop_block_steps)


@MODELS.register("bbn_torchvision")
def bbn_torchvision(
    in_channels: int = 3,
    arch: str = "resnet18",
    pretrained: bool = False,
    drop_block_prob: float = 0.0,
    drop_block_size: int = 5,
    drop_block_steps: int = 0,
    **kwargs: Any,
) -> BilateralBackbone:
    """BBN on a torchvision ResNet or RegNet (arch: resnet18, regnet_y_800mf, ...): two copies of its last stage."""
    from .torchvision_backbone import TorchvisionBackbone

    def make() -> StagedBackbone:
        net = TorchvisionBackbone(arch, in_channels, pretrained, **kwargs)
        if net.family is None:
            raise ConfigError(f"model.arch: BBN needs a ResNet or RegNet, not torchvision '{arch}' (e.g. resnet18, regnet_y_800mf)")
        return net

    return BilateralBackbone(make, drop_block_prob, drop_block_size, drop_block_steps)


@MODELS.register("bbn_timm")
def bbn_timm(
    in_channels: int = 3,
    arch: str = "resnet18",
    pretrained: bool = False,
    drop_block_prob: float = 0.0,
    drop_block_size: int = 5,
    drop_block_steps: int = 0,
    **kwargs: Any,
) -> BilateralBackbone:
    """BBN on a timm ResNet or RegNet (arch: resnet18, regnety_008, ...): two copies of its last stage."""
    from .timm_staged import TimmStagedBackbone

    return BilateralBackbone(lambda: TimmStagedBackbone(arch, in_channels, pretrained, **kwargs),
                             drop_block_prob, drop_block_size, drop_block_steps)
