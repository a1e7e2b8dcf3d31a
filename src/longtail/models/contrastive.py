"""BCL's contrastive branch (Zhu et al., CVPR 2022): a projection MLP on the features and a centre MLP on
the classifier's class vectors, both L2-normalised, that only a contrastive loss asks for.

The official ``models/resnext.py`` ``BCLModel`` gives every call ``(feat_mlp, logits, centers)``. Here the
branch sits beside the head of an ordinary :class:`~longtail.models.classifier.Classifier`
(``model.contrastive``): plain calls give the logits (and features) as for any model, so validation, TTA,
post-hoc steps, predict, serve and export never see it; ``model(x, return_contrast=True)`` gives a
:class:`ContrastOutput`, which the ``bcl`` train step asks for (engine/steps.py).

Both MLPs are ``Linear(D, H) - BatchNorm1d(H) - ReLU - Linear(H, dim)`` with ``H = D`` by default, as
BCLModel's ``head`` and ``head_fc``. The class centres are the centre MLP of the head's class vectors
(the C x D rows of ``head.weight``; BCLModel's ``head_fc(fc.weight.T)`` on its D x C ``NormedLinear``
weight), so the contrastive loss trains the classifier's weights too.
"""

from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import ConfigError


class ContrastOutput(NamedTuple):
    """What ``model(x, return_contrast=True)`` returns (a tuple, so DDP and autocast pass it through)."""

    logits: Tensor  # N x C, what every plain call gives
    features: Tensor  # N x D, what the head sees
    projections: Tensor  # N x dim, the projection MLP of the features, unit length
    centers: Tensor  # C x dim, the centre MLP of the head's class vectors, unit length


def projection_mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """BCLModel's MLP: Linear - BatchNorm1d - ReLU - Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


class ContrastiveHeads(nn.Module):
    """The projection MLP (``projection``, on the N x D features) and the centre MLP (``centers``, on the C x D
    class vectors), each followed by L2 normalisation."""

    def __init__(self, in_dim: int, num_classes: int, dim: int = 128, hidden: int | None = None) -> None:
        super().__init__()
        if dim < 1 or (hidden is not None and hidden < 1):
            raise ConfigError(f"model.contrastive: dim and hidden must be at least 1, got dim={dim}, hidden={hidden}")
        if num_classes < 2:  # the centre MLP's BatchNorm normalises over the class vectors
            raise ConfigError(f"model.contrastive needs at least 2 classes (its centre MLP normalises over the class vectors), got {num_classes}")
        self.in_dim, self.dim = int(in_dim), int(dim)
        self.hidden = int(hidden) if hidden is not None else self.in_dim
        self.projection = projection_mlp(self.in_dim, self.hidden, self.dim)
        self.centers = projection_mlp(self.in_dim, self.hidden, self.dim)

    def project(self, features: Tensor) -> Tensor:
        """N x D features -> N x dim unit vectors."""
        return F.normalize(self.projection(features), dim=1)

    def class_centers(self, class_vectors: Tensor) -> Tensor:
        """C x D class vectors (the head's weight rows) -> C x dim unit vectors."""
        return F.normalize(self.centers(class_vectors), dim=1)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, hidden={self.hidden}, dim={self.dim}"


def class_vectors(head: nn.Module) -> Tensor:
    """The head's C x D class vectors (linear, cosine, lws and scaled_linear heads all hold them as ``weight``)."""
    weight = getattr(head, "weight", None)
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise ConfigError(f"model.contrastive makes its class centres from the head's class vectors, which a '{type(head).__name__}' head "
                          "does not have; use model.head=linear or cosine")
    return weight
