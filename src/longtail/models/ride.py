"""RIDE's multi-expert CIFAR ResNet-32 (Wang et al., ICLR 2021; frank-xwang/RIDE-LongTailRecognition).

The official ``model/ldam_drw_resnets/ride_resnet_cifar.py`` (``ResNet32Model`` with ``num_experts > 1``)
shares the stem and the first stage (16 wide, 5 BasicBlocks) and gives each expert its own second and
third stage, 24 and 48 wide with ``reduce_dimension`` (32 and 64 without), then its own ``NormedLinear``
head whose cosine logits it multiplies by ``s = 30``; the model's output is the mean of the experts'
logits. Here the trunk and each branch are this package's LDAM-DRW ResNet-32 parts (option-A
shortcuts, Kaiming-normal convolutions), the heads an :class:`~longtail.models.experts.ExpertHeads`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..core.errors import ConfigError
from ..core.registry import MODELS
from .experts import ExpertBackbone
from .resnet import ResNet

STEM_WIDTH = 16  # the shared stem and first stage of the CIFAR ResNet-32


def _cifar_resnet(blocks: int, widths: Sequence[int], in_channels: int) -> ResNet:
    return ResNet([blocks] * len(widths), list(widths), in_channels, small_input=True, shortcut="A", init="ldam", arch="resnet32")


@MODELS.register("ride_resnet32")
def ride_resnet32(
    in_channels: int = 3,
    num_experts: int = 3,
    reduce_dimension: bool = True,
    expert_widths: Sequence[int] | None = None,
    scale: float = 30.0,
    blocks: int = 5,
    router: bool = False,
    router_hidden: int = 16,
    router_top_choices: int = 30,
    router_shared_output: bool = True,
) -> ExpertBackbone:
    """RIDE on CIFAR ResNet-32: shared stem and 16-wide stage, E experts with own 24/48-wide stages and heads.

    ``router``: RIDE's expert-assignment router beside the heads (models/router.py; trained by a later stage
    with ``train_only: router``), with ``router_hidden`` units per expert, the ``router_top_choices`` largest
    running-mean logits and one output layer shared by every router (``router_shared_output``)."""
    widths = [int(w) for w in expert_widths] if expert_widths is not None else ([24, 48] if reduce_dimension else [32, 64])
    if len(widths) != 2 or min(widths) < 1:
        raise ConfigError(f"ride_resnet32: expert_widths {widths} must be two positive widths (second and third stage), e.g. [24, 48]")
    if int(num_experts) < 1:
        raise ConfigError(f"ride_resnet32: num_experts must be at least 1, got {num_experts}")
    if int(blocks) < 1:
        raise ConfigError(f"ride_resnet32: blocks (BasicBlocks per stage, 5 = ResNet-32) must be at least 1, got {blocks}")
    trunk = _cifar_resnet(int(blocks), [STEM_WIDTH], in_channels)
    branches = []
    for _ in range(int(num_experts)):
        full = _cifar_resnet(int(blocks), [STEM_WIDTH, *widths], in_channels)  # its stem and first stage are dropped
        branches.append(nn.Sequential(full.layer2, full.layer3))
    settings = {"hidden": int(router_hidden), "top_choices": int(router_top_choices), "shared_output": bool(router_shared_output)} if router else None
    return ExpertBackbone(trunk, branches, widths[-1], scale, arch="ride_resnet32", router=settings)
