"""Several logits from one model: the one interface for multi-expert models (RIDE, SADE/TADE).

A multi-expert model is an ordinary :class:`~longtail.models.classifier.Classifier` whose backbone is an
:class:`ExpertBackbone` (a shared trunk, then E expert branches; ``forward`` gives the experts' pooled
features side by side, N x E*D) and whose head is an :class:`ExpertHeads` (one head per expert on its own
D features). Plain calls give the **aggregated** logits only (:meth:`ExpertHeads.aggregate`, the mean of
the experts' logits), so evaluation, TTA, post-hoc steps, predict, serve, export, SPBL and every loss see
one N x C tensor as for any other model. Only ``model(x, return_experts=True)`` gives an
:class:`ExpertOutput`, the aggregate with the features and the per-expert logits (N x E x C, experts in
a fixed order, so a loss may treat expert e differently: SADE's forward / uniform / backward experts);
the train step asks for it when the loss sets ``needs_experts`` (docs/architecture.md, "Multi-expert
models"). A model with a single head has no experts to give: asking is a one-line ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ..core.errors import ConfigError, LongtailError
from .heads import BiasMode, make_head
from .router import ExpertRouter, routed_logits
from .staged import StagedBackbone, global_pool

#: head kinds an expert may have (LWS rescales one trained linear head: no expert form)
EXPERT_HEAD_KINDS = ("linear", "cosine")


class ExpertOutput(NamedTuple):
    """What ``model(x, return_experts=True)`` returns (a tuple, so DDP and autocast pass it through)."""

    logits: Tensor  # N x C, the aggregate: what evaluation and every plain call see
    features: Tensor  # N x (E * D), the experts' pooled features side by side
    experts: Tensor  # N x E x C, each expert's own logits, in the model's expert order
    router: Tensor | None = None  # N x (E - 1) router logits of a model with RIDE's router (models/router.py), else None


class ExpertBackbone(nn.Module):
    """A shared trunk, then E expert branches; ``forward`` -> the experts' pooled features side by side (N x E*D).

    ``trunk`` runs once per image (``forward_maps``); each branch maps the trunk's feature map to its own
    map, pooled to ``branch_dim`` features. ``logit_scale`` is what the expert heads multiply cosine logits
    by (RIDE's ``s``, inside the model as in the official code).
    """

    def __init__(self, trunk: StagedBackbone, branches: Sequence[nn.Module], branch_dim: int, logit_scale: float = 1.0,
                 arch: str = "experts", router: dict[str, Any] | None = None) -> None:
        super().__init__()
        if not branches:
            raise ConfigError(f"{arch}: num_experts must be at least 1")
        if not logit_scale > 0:
            raise ConfigError(f"{arch}: scale must be > 0, got {logit_scale}")
        self.arch = arch
        self.trunk = trunk
        self.experts = nn.ModuleList(branches)
        self.num_experts = len(self.experts)
        self.branch_dim = int(branch_dim)
        self.feature_dim = self.num_experts * self.branch_dim
        self.logit_scale = float(logit_scale)
        self.router_settings = router  # ExpertRouter's keyword arguments, or None: no router (head_for builds it)

    def expert_features(self, x: Tensor) -> Tensor:
        """Each expert's pooled features, N x E x D (the trunk computed once)."""
        shared = self.trunk.forward_maps(x)
        return torch.stack([global_pool(branch(shared)) for branch in self.experts], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.expert_features(x).flatten(1)


class ExpertHeads(nn.Module):
    """One head per expert, each on its own slice of the features; ``forward`` -> the aggregated logits.

    ``cosine`` heads are LDAM's ``NormedLinear`` times ``scale`` (RIDE: s = 30 inside the model);
    ``linear`` heads give raw logits (the official ``use_norm: false`` sets s = 1). The aggregate is
    :meth:`aggregate`, the mean over experts, or the weighted sum under the weights a test-time step
    sets (:meth:`set_expert_weights`, SADE's self-supervised aggregation).
    """

    def __init__(self, kind: str, num_experts: int, in_features: int, num_classes: int, bias: BiasMode = "zero",
                 class_counts: Sequence[int] | np.ndarray | None = None, scale: float = 1.0, router: ExpertRouter | None = None) -> None:
        super().__init__()
        if kind not in EXPERT_HEAD_KINDS:
            raise ConfigError(f"model.head '{kind}': a multi-expert model's experts take linear or cosine heads; set model.head=cosine or linear")
        self.kind = kind
        self.num_experts = int(num_experts)
        self.in_features = int(in_features)
        self.num_classes = int(num_classes)
        self.scale = float(scale) if kind == "cosine" else 1.0
        self.experts = nn.ModuleList(make_head(kind, self.in_features, self.num_classes, bias, class_counts) for _ in range(self.num_experts))
        self.expert_weights: Tensor | None = None  # None: the mean; else set by a test-time step (set_expert_weights)
        self.router = router  # RIDE's expert-assignment router (models/router.py), or None

    def expert_logits(self, h: Tensor) -> Tensor:
        """N x E x C: expert e's head on features ``h[:, e*D:(e+1)*D]``."""
        chunks = h.reshape(h.shape[0], self.num_experts, self.in_features)
        out = torch.stack([head(chunks[:, e]) for e, head in enumerate(self.experts)], dim=1)
        return out * self.scale if self.scale != 1.0 else out

    def aggregate(self, experts: Tensor) -> Tensor:
        """The logits evaluation uses: the mean of the experts' logits (RIDE's ``final_out``), or their
        weighted sum under the weights a test-time step set (:meth:`set_expert_weights`)."""
        if self.expert_weights is None:
            return experts.mean(dim=1)
        return torch.einsum("e,nec->nc", self.expert_weights.to(experts), experts)

    def set_expert_weights(self, weights: Tensor | Sequence[float] | np.ndarray | None) -> None:
        """Aggregate with these expert weights (E non-negative values summing to 1) instead of the mean; None: the mean again.

        SADE's test-time self-supervised aggregation (evaluation/test_time.py) learns them on one test
        set's unlabelled images, so they belong to that evaluation, not to the trained model: they are
        an attribute, not a buffer, and no checkpoint holds them."""
        if weights is None:
            self.expert_weights = None
            return
        w = weights.detach().float().cpu() if isinstance(weights, Tensor) else torch.as_tensor(np.asarray(weights, dtype=np.float32))
        if w.shape != (self.num_experts,) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or abs(float(w.sum()) - 1.0) > 1e-4:
            raise LongtailError(f"expert weights must be {self.num_experts} non-negative values summing to 1 (one per expert), got {w.tolist()}")
        self.expert_weights = w

    def routing(self) -> bool:
        """Whether evaluation routes: a trained router (its stage switched it on), in eval mode, no test-time weights set."""
        return self.router is not None and bool(self.router.active) and not self.training and self.expert_weights is None

    def router_logits(self, h: Tensor, experts: Tensor) -> Tensor | None:
        """N x (E - 1) router logits for the features ``h`` and the experts' logits; None without a router or before
        its stage switched it on (the stages before train the experts only, and their batches skip it)."""
        if self.router is None or not bool(self.router.active):
            return None
        return self.router(h.reshape(h.shape[0], self.num_experts, self.in_features), experts)

    def combine(self, h: Tensor, experts: Tensor) -> tuple[Tensor, Tensor | None]:
        """The logits every consumer sees (routed while :meth:`routing`, else :meth:`aggregate`) and the router logits."""
        router = self.router_logits(h, experts)
        if router is not None and self.routing():
            return routed_logits(experts, router), router
        return self.aggregate(experts), router

    def forward(self, h: Tensor) -> Tensor:
        experts = self.expert_logits(h)
        if self.routing():
            return self.combine(h, experts)[0]
        return self.aggregate(experts)

    def reset_parameters(self) -> None:
        """Re-initialise every expert's head (cRT's ``reinit_head``)."""
        for head in self.experts:
            head.reset_parameters()  # type: ignore[operator]

    def extra_repr(self) -> str:
        return f"kind={self.kind}, num_experts={self.num_experts}, in_features={self.in_features}, num_classes={self.num_classes}, scale={self.scale:g}"


def head_for(backbone: nn.Module, kind: str, feature_dim: int, num_classes: int, bias: BiasMode = "zero",
             class_counts: Sequence[int] | np.ndarray | None = None) -> nn.Module:
    """The head a :class:`Classifier` builds: :class:`ExpertHeads` on an :class:`ExpertBackbone`, else ``make_head``."""
    if not isinstance(backbone, ExpertBackbone):
        return make_head(kind, feature_dim, num_classes, bias, class_counts)
    if feature_dim != backbone.feature_dim:
        raise ConfigError(f"model.metadata does not work with the multi-expert model '{backbone.arch}' (each expert's head reads its "
                          "own branch's features); drop model.metadata or use a single-head backbone")
    router = None
    if backbone.router_settings is not None:
        router = ExpertRouter(backbone.num_experts, backbone.branch_dim, num_classes, **backbone.router_settings)
    return ExpertHeads(kind, backbone.num_experts, backbone.branch_dim, num_classes, bias, class_counts, backbone.logit_scale, router)


def expert_output(head: nn.Module, h: Tensor, features: Tensor) -> ExpertOutput:
    """The aggregate, the features and the per-expert logits of ``head`` on the (dropped-out) features ``h``."""
    if not isinstance(head, ExpertHeads):
        raise ConfigError(f"the loss trains the experts of a multi-expert model, but this model has a single head ({type(head).__name__}); "
                          "use a multi-expert model (model.name=ride_resnet32) or a loss without experts")
    experts = head.expert_logits(h)
    logits, router = head.combine(h, experts)
    return ExpertOutput(logits, features, experts, router)
