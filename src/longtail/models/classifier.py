"""``Classifier`` = backbone (images -> features) + optional dropout + head (features -> logits).

Decoupled training and fine-tuning act through a few methods here, not by reaching into the
modules: ``freeze_backbone`` (cRT/LWS stage 2, MBIT's FREEZE), ``reset_head`` (cRT),
``set_head`` (swap to LWS or a cosine head), and ``freeze_fraction`` (HMLoss's fractional
fine-tuning).

With ``metadata_dim > 0`` (``model.metadata``) a :class:`~longtail.models.metadata.MetadataMLP` embeds
the encoded metadata vector and the embedding is concatenated to the backbone's features before the
dropout and the head: ``features`` (what ``return_features`` gives, what the head, IB loss, tau-norm
and SPBL see) is then ``[backbone(x), mlp(meta)]`` and ``feature_dim`` their summed width. The MLP
counts as part of the representation: ``freeze_backbone`` freezes it with the backbone (a cRT / LWS
stage retrains the head on fixed fused features; a head-only warm-up leaves the MLP at its
initialisation), and ``freeze_fraction`` counts its tensors after the backbone's, before the head's.
Without metadata nothing of this exists: the module, its parameters and its state dict are as before.

On a multi-expert backbone (:class:`~longtail.models.experts.ExpertBackbone`, e.g. RIDE) the head is an
:class:`~longtail.models.experts.ExpertHeads`: plain calls give the aggregated logits, and only
``forward(x, return_experts=True)`` gives an :class:`~longtail.models.experts.ExpertOutput` with the
per-expert logits (``models/experts.py``, the one place this is done).

With ``contrastive_dim > 0`` (``model.contrastive``, BCL) a
:class:`~longtail.models.contrastive.ContrastiveHeads` (a projection MLP on the features, a centre MLP on
the head's class vectors) sits beside the head; only ``forward(x, return_contrast=True)`` uses it and gives
a :class:`~longtail.models.contrastive.ContrastOutput`, every other call is as without it. It counts as
part of the representation: ``freeze_backbone`` freezes it with the backbone. Without it nothing of this
exists in the module or its state dict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..core.errors import ConfigError, DataError, LongtailError
from .contrastive import ContrastiveHeads, ContrastOutput, class_vectors
from .experts import ExpertBackbone, ExpertHeads, ExpertOutput, expert_output, head_for
from .heads import BiasMode, LinearHead, LWSHead, ScaledLinearHead, head_kind, make_head
from .metadata import MetadataMLP
from .norms import NormMode, batch_norms, train_affine
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
        metadata_dim: int = 0,
        metadata_hidden: int = 64,
        contrastive_dim: int = 0,
        contrastive_hidden: int | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise DataError(f"the model needs at least one class, got num_classes={num_classes}")
        if class_counts is not None and len(class_counts) != num_classes:
            raise DataError(f"class_counts has {len(class_counts)} entries but the model has {num_classes} classes")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout={dropout} must be in [0, 1)")
        self.backbone = backbone
        self.metadata_dim = int(metadata_dim)
        if self.metadata_dim:  # registered after the backbone, before the head: the parameter order freeze_fraction counts
            self.metadata_mlp: MetadataMLP | None = MetadataMLP(self.metadata_dim, metadata_hidden)
        else:
            self.metadata_mlp = None
        self.feature_dim = int(backbone.feature_dim) + (self.metadata_mlp.out_dim if self.metadata_mlp is not None else 0)  # type: ignore[arg-type]
        self.num_classes = int(num_classes)
        self.head_bias: BiasMode = head_bias
        self.class_counts = None if class_counts is None else [int(c) for c in class_counts]
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # model.contrastive (BCL): registered before the head, so that the head's tensors stay the last (freeze_fraction)
        self.contrastive: ContrastiveHeads | None = None
        if contrastive_dim:
            if isinstance(backbone, ExpertBackbone):
                raise ConfigError(f"model.contrastive needs one head of class vectors, but the multi-expert model '{backbone.arch}' has one per expert; "
                                  "drop model.contrastive or use a single-head backbone")
            self.contrastive = ContrastiveHeads(self.feature_dim, self.num_classes, contrastive_dim, contrastive_hidden)
        self.head = head_for(backbone, head, self.feature_dim, self.num_classes, head_bias, self.class_counts)  # ExpertHeads on experts
        self._backbone_frozen = False
        self._fraction_frozen: list[nn.Parameter] = []
        self._norm_mode: NormMode = False  # stages[].train_norm: the frozen backbone's BatchNorm layers still train

    @property
    def arch(self) -> str:
        return model_arch(self.backbone)

    @property
    def head_kind(self) -> str:
        return self.head.kind if isinstance(self.head, ExpertHeads) else head_kind(self.head)

    @property
    def backbone_frozen(self) -> bool:
        return self._backbone_frozen

    def forward(self, x: Tensor, return_features: bool = False, meta: Tensor | None = None,
                return_experts: bool = False, return_contrast: bool = False) -> Tensor | tuple[Tensor, Tensor] | ExpertOutput | ContrastOutput:
        """Logits [, features]; ``return_experts``: an :class:`ExpertOutput` (multi-expert models only, for a loss that trains experts);
        ``return_contrast``: a :class:`ContrastOutput` (``model.contrastive`` only, for BCL's loss)."""
        features = self.features(x, meta)
        if return_experts:
            return expert_output(self.head, self.dropout(features), features)
        if return_contrast:
            return self.contrast_output(features)
        logits = self.head(self.dropout(features))
        return (logits, features) if return_features else logits

    def contrast_output(self, features: Tensor) -> ContrastOutput:
        """The logits, ``features``, their unit projections and the unit class centres (``model.contrastive``)."""
        if self.contrastive is None:
            raise ConfigError("this model has no contrastive branch (a projection and a class-centre MLP); set model.contrastive: {dim: 128}")
        logits = self.head(self.dropout(features))
        centers = self.contrastive.class_centers(class_vectors(self.head).to(features.dtype))
        return ContrastOutput(logits, features, self.contrastive.project(features), centers)

    def features(self, x: Tensor, meta: Tensor | None = None) -> Tensor:
        """What the head sees: the backbone's features, joined by the metadata embedding in a metadata model."""
        features = self.backbone(x)
        if self.metadata_mlp is None:
            if meta is not None:
                raise LongtailError("this model takes images only (it was built without model.metadata); pass no metadata")
            return features
        if meta is None:
            raise LongtailError(f"this model also takes {self.metadata_dim} encoded metadata inputs (model.metadata) beside each image; pass them")
        embedded = self.metadata_mlp(meta.to(features.device))
        return torch.cat([features, embedded.to(features.dtype)], dim=1)

    def _representation(self) -> list[nn.Module]:
        """The modules ``freeze_backbone`` freezes: the backbone and, in a metadata model, its MLP (and BCL's contrastive branch)."""
        modules: list[nn.Module] = [self.backbone] if self.metadata_mlp is None else [self.backbone, self.metadata_mlp]
        return modules if self.contrastive is None else [*modules, self.contrastive]

    def train(self, mode: bool = True) -> Classifier:
        """As ``nn.Module.train``, but a frozen backbone stays in eval mode (BN statistics fixed), except its
        BatchNorm layers under ``train_norm`` (statistics updated: MiSLAS's shift learning)."""
        super().train(mode)
        if self._backbone_frozen:
            for module in self._representation():
                module.eval()
            if mode and self._norm_mode:
                for norm in batch_norms(self._representation()):
                    norm.train()
        return self

    def freeze_backbone(self, flag: bool = True) -> None:
        """Stop (or restart) training the backbone (and a metadata model's MLP): no gradients, BN statistics and DropBlock frozen.

        Also lifts an earlier ``freeze_fraction`` (which may reach into the head), so each stage
        starts from its own freezing rule.
        """
        for p in self._fraction_frozen:
            p.requires_grad_(True)
        self._fraction_frozen = []
        self._backbone_frozen = flag
        self._norm_mode = False  # each stage sets its own (train_norm after this call)
        for module in self._representation():
            for p in module.parameters():
                p.requires_grad_(not flag)
        self.train(self.training)

    def train_norm(self, mode: NormMode) -> int:
        """Keep training the frozen backbone's BatchNorm layers (``stages[].train_norm``, MiSLAS's shift learning).

        ``"stats"``: their running statistics follow the stage's batches (training mode), the affine
        parameters stay frozen, as MiSLAS's official ``shift_bn``; ``True``: the affine weight and bias
        train too; ``False``: the freezing rule alone. Call it after :meth:`freeze_backbone` (which resets
        it). Returns the number of BatchNorm layers it applies to.
        """
        if not mode:
            if self._backbone_frozen:  # a frozen backbone's BatchNorm parameters frozen again
                train_affine(batch_norms(self._representation()), False)
            self._norm_mode = False
            self.train(self.training)
            return 0
        if not self._backbone_frozen:
            raise ConfigError("train_norm applies to a frozen backbone (everything else trains anyway); set freeze_backbone: true in the stage or remove train_norm")
        norms = batch_norms(self._representation())
        if not norms:
            raise ConfigError(f"train_norm: the backbone '{self.arch}' has no BatchNorm layer to train; remove train_norm from the stage")
        train_affine(norms, mode is True)
        self._norm_mode = mode
        self.train(self.training)
        return len(norms)

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
        for module in self._representation():
            for p in module.parameters():
                p.requires_grad_(True)
        self._backbone_frozen = False
        self._fraction_frozen = [p for p in params[:frozen] if p.requires_grad]
        for p in self._fraction_frozen:
            p.requires_grad_(False)
        self.train(self.training)
        return frozen

    def train_only_router(self, flag: bool) -> None:
        """Train nothing but RIDE's router (``stages[].train_only: router``), or everything but it.

        ``True``: the backbone frozen (BN statistics too, as :meth:`freeze_backbone`), the expert heads
        frozen, the router trainable and switched on, so that evaluation from here routes (the official EA
        stage: every weight but the router's frozen, frozen BatchNorm layers in eval mode). ``False``: the
        router takes no gradient (a stage that trains the experts leaves it out) and the expert heads
        follow the stage's own freezing rule. Call it after :meth:`freeze_backbone`."""
        router = getattr(self.head, "router", None)
        if router is None:
            if flag:
                raise ConfigError(f"stage train_only: router needs RIDE's router on the multi-expert model ('{self.arch}' has none); "
                                  "set model.router: true (ride_resnet32)")
            return
        if flag:
            self.freeze_backbone(True)
            for p in self.head.experts.parameters():  # type: ignore[union-attr]
                p.requires_grad_(False)
            router.active.fill_(True)
        else:
            for p in self.head.experts.parameters():  # type: ignore[union-attr]
                p.requires_grad_(True)
        for p in router.parameters():
            p.requires_grad_(flag)

    def reset_head(self) -> None:
        """Re-initialise the head (cRT); an LWS head goes back to scales of 1."""
        self.head.reset_parameters()  # type: ignore[operator]

    def set_head(self, kind: str, class_counts: Sequence[int] | np.ndarray | None = None) -> None:
        """Switch the head to ``kind`` ('linear', 'cosine', 'lws' or 'scaled_linear').

        linear -> lws keeps the trained linear weights, frozen, with learnable scales (Kang et al.);
        lws -> linear folds the scales into the weights. linear (or lws, folded first) -> scaled_linear keeps
        the trained weights, trainable, with learnable logit scales (MiSLAS); scaled_linear -> linear folds
        them into the weights and the bias. Any other change builds a fresh head
        (``class_counts`` for a log-prior bias default to those the model was built with). Asking
        for the current kind changes nothing.
        """
        current = self.head_kind
        if kind == current:
            return
        if isinstance(self.head, ExpertHeads):
            raise ConfigError(f"stage head '{kind}': a multi-expert model ({self.arch}) keeps its {current} expert heads; "
                              "remove the stage's head key (reinit_head re-initialises them)")
        counts = class_counts if class_counts is not None else self.class_counts
        if kind == "lws":
            if not isinstance(self.head, LinearHead):
                raise ConfigError(
                    f"head 'lws' rescales a trained linear head, but the model's head is '{current}'; train with model.head=linear"
                )
            new: nn.Module = LWSHead(self.head)
        elif kind == "linear" and isinstance(self.head, (LWSHead, ScaledLinearHead)):
            new = self.head.to_linear()
        elif kind == "scaled_linear" and isinstance(self.head, (LinearHead, LWSHead)):
            new = ScaledLinearHead(self.head if isinstance(self.head, LinearHead) else self.head.to_linear())
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
