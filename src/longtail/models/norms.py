"""BatchNorm layers of a frozen representation brought back to training (``stages[].train_norm``).

MiSLAS's shift learning on BatchNorm (Zhong et al., CVPR 2021): after the classifier-only stage freezes
the backbone, its BatchNorm layers may still follow the stage's data. ``stats`` updates only their
running statistics (the layers normalise with batch statistics in training mode, as the official
``train_stage2.py`` with ``shift_bn: True`` does by keeping the model in ``train()`` under
``torch.no_grad()``); ``True`` also trains their affine weight and bias. Only ``_BatchNorm`` layers
(BatchNorm1d/2d/3d, SyncBatchNorm, timm's BatchNormAct2d) count: they are the layers with running
statistics that a change of the training distribution shifts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Union

from torch import nn

#: False: the stage's freezing rule alone; "stats": running statistics updated; True: statistics and affine parameters
NormMode = Union[bool, Literal["stats"]]


def batch_norms(modules: Iterable[nn.Module]) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer inside ``modules``, in module order."""
    return [m for module in modules for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def train_affine(norms: Iterable[nn.modules.batchnorm._BatchNorm], trainable: bool) -> int:
    """Set ``requires_grad`` of the layers' weight and bias; returns how many tensors that covers."""
    count = 0
    for norm in norms:
        for p in norm.parameters(recurse=False):
            p.requires_grad_(trainable)
            count += 1
    return count
