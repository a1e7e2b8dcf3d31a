"""``Classifier`` = backbone (images -> features) + optional dropout + head (features -> logits).

Decoupled training and fine-tuning act through a few methods here, not by reaching into the
modules: ``freeze_backbone`` (cRT/LWS stage 2, MBIT's FREEZE), ``reset_head`` (cRT),
``set_head`` (swap to LWS or a cosine head), and ``freeze_fraction`` (HMLoss's fractional
fine-tuning).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from torch import Tensor, nn

from ..core.errors import ConfigError, DataError
from .heads import BiasMode, LinearHead, LWSHead, head_kind, make_head
from .weights import model_arch


class Classifier(nn.Module):
    """Backbone + dropout + head; ``forward(x, return_features=False)`` -> logits [, features]."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        head: str = "linear",
        head_bias: BiasMode = "zero",
        dropout: float = 0.0,
        class_counts: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise DataError(f"the model needs at least one class, got num_classes={num_classes}")
        if class_counts is not None and len(class_counts) != num_classes:
            raise DataError(f"class_counts has {len(class_counts)} entries but the model has {num_classes} classes")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout={dropout} must be in [0, 1)")
        self.backbone = backbone
        self.feature_dim = int(backbone.feature_dim)  # type: ignore[arg-type]
        self.num_classes = int(num_classes)
        self.head_bias: BiasMode = head_bias
        self.class_counts = None if class_counts is None else [int(c) for c in class_counts]
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = make_head(head, self.feature_dim, self.num_classes, head_bias, self.class_counts)
        self._backbone_frozen = False
        self._fraction_frozen: list[nn.Parameter] = []

    @property
    def arch(self) -> str:
        return model_arch(self.backbone)

    @property
    def head_kind(self) -> str:
        return head_kind(self.head)

    @property
    def backbone_frozen(self) -> bool:
        return self._backbone_frozen

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        features = self.backbone(x)
        logits = self.head(self.dropout(features))
        return (logits, features) if return_features else logits

    def train(self, mode: bool = True) -> Classifier:
        """As ``nn.Module.train``, but a frozen backbone stays in eval mode (BN statistics fixed)."""
        super().train(mode)
        if self._backbone_frozen:
            self.backbone.eval()
        return self

    def freeze_backbone(self, flag: bool = True) -> None:
        """Stop (or restart) training the backbone: no gradients, BN statistics and DropBlock frozen.

        Also lifts an earlier ``freeze_fraction`` (which may reach into the head), so each stage
        starts from its own freezing rule.
        """
        for p in self._fraction_frozen:
            p.requires_grad_(True)
        self._fraction_frozen = []
        self._backbone_frozen = flag
        for p in self.backbone.parameters():
            p.requires_grad_(not flag)
        self.train(self.training)

    def freeze_fraction(self, ratio_trainable: float) -> int:
        """Train only the last ``ratio_trainable`` of parameter tensors (HMLoss ``--ratio_finetune``).

        Parameter tensors are counted in ``named_parameters`` order (backbone first, head last),
        and the first ``floor((1 - ratio) * count)`` are frozen, as HMLoss does for EfficientNet-B3
        (``ratio_finetune=32`` -> ``ratio_trainable=0.32``). As in HMLoss, BN layers in the frozen
        part keep updating their running statistics. Returns how many tensors were frozen.
        """
        if not 0.0 < ratio_trainable <= 1.0:
            hint = f" (did you mean {ratio_trainable / 100:g}?)" if 1.0 < ratio_trainable <= 100.0 else ""
            raise ConfigError(f"ratio_trainable={ratio_trainable} must be a fraction in (0, 1]{hint}")
        params = list(self.parameters())
        frozen = math.floor((1.0 - ratio_trainable) * len(params) + 1e-9)
        for p in self.backbone.parameters():
            p.requires_grad_(True)
        self._backbone_frozen = False
        self._fraction_frozen = [p for p in params[:frozen] if p.requires_grad]
        for p in self._fraction_frozen:
            p.requires_grad_(False)
        self.train(self.training)
        return frozen

    def reset_head(self) -> None:
        """Re-initialise the head (cRT); an LWS head goes back to scales of 1."""
        self.head.reset_parameters()  # type: ignore[operator]

    def set_head(self, kind: str, class_counts: Sequence[int] | np.ndarray | None = None) -> None:
        """Switch the head to ``kind`` ('linear', 'cosine' or 'lws').

        linear -> lws keeps the trained linear weights, frozen, with learnable scales (Kang et al.);
        lws -> linear folds the scales into the weights. Any other change builds a fresh head
        (``class_counts`` for a log-prior bias default to those the model was built with). Asking
        for the current kind changes nothing.
        """
        current = self.head_kind
        if kind == current:
            return
        counts = class_counts if class_counts is not None else self.class_counts
        if kind == "lws":
            if not isinstance(self.head, LinearHead):
                raise ConfigError(
                    f"head 'lws' rescales a trained linear head, but the model's head is '{current}'; train with model.head=linear"
                )
            new: nn.Module = LWSHead(self.head)
        elif kind == "linear" and isinstance(self.head, LWSHead):
            new = self.head.to_linear()
        else:
            bias: BiasMode = "none" if kind == "cosine" else self.head_bias
            new = make_head(kind, self.feature_dim, self.num_classes, bias, counts)
        ref = next(iter(self.head.state_dict().values()))
        self.head = new.to(device=ref.device, dtype=ref.dtype)

    def on_epoch_start(self, epoch: int, max_epoch: int) -> None:
        """Per-epoch hook (nothing to do for a plain classifier; BBN updates its alpha)."""


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (each shared tensor counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
