"""RIDE's expert-assignment router (Wang et al., ICLR 2021): which images need the next expert at all.

Official form: frank-xwang/RIDE-LongTailRecognition ``model/ldam_drw_resnets/ea_resnet_cifar.py``
(``expert_help_pred_hidden_fcs``, ``expert_help_pred_fc``, ``pred_expert_help``). For each expert ``i``
but the last, with ``f_i`` expert i's pooled features and ``m_i`` the running mean of the logits of
experts ``0..i``:

    r_i = out([top_k(m_i), relu(hidden_i(f_i / ||f_i||))])      (one logit: "consult expert i + 1")

``hidden_i`` maps to ``hidden`` (16) units; ``out`` is one layer shared by every router
(``share_expert_help_pred_fc``) or one per expert; ``top_k`` keeps the ``top_choices`` largest
running-mean logits. Trained on its own (losses/ride.py ``ride_router``, a stage with ``train_only:
router``), it decides at evaluation: every image uses expert 0, and expert ``i + 1`` only while every
router up to ``i`` says yes (``sigmoid(r) > 0.5``); the prediction is the mean of the experts an image
used. The official evaluates only those experts; here every expert runs and the routing masks them
(the same prediction for any batch, a fixed-shape graph that export, TTA and DDP take as is), so
the saving is counted (:func:`experts_used`), not timed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import ConfigError


class ExpertRouter(nn.Module):
    """One router per expert but the last: ``forward(features N x E x D, experts N x E x C) -> N x (E - 1)`` logits."""

    def __init__(self, num_experts: int, feature_dim: int, num_classes: int, hidden: int = 16, top_choices: int = 30,
                 shared_output: bool = True) -> None:
        super().__init__()
        if num_experts < 2:
            raise ConfigError(f"model.router needs at least 2 experts (it decides whether to consult the next one), got {num_experts}")
        if not 1 <= top_choices <= num_classes:
            raise ConfigError(f"model router_top_choices={top_choices} must be between 1 and the number of classes ({num_classes}); "
                              f"RIDE uses 30 on CIFAR-100, e.g. {min(30, num_classes)} here")
        if hidden < 1:
            raise ConfigError(f"model router_hidden must be at least 1, got {hidden}")
        self.num_experts, self.top_choices, self.shared_output = int(num_experts), int(top_choices), bool(shared_output)
        self.hidden = nn.ModuleList(nn.Linear(feature_dim, hidden) for _ in range(self.num_experts - 1))
        outputs = 1 if self.shared_output else self.num_experts - 1
        self.output = nn.ModuleList(nn.Linear(hidden + self.top_choices, 1) for _ in range(outputs))
        for layer in [*self.hidden, *self.output]:
            nn.init.kaiming_normal_(layer.weight)  # the official _weights_init on every Linear
        # off until a router stage trains it (Classifier.train_only_router): before that, evaluation uses every expert
        self.register_buffer("active", torch.zeros((), dtype=torch.bool))

    def forward(self, features: Tensor, experts: Tensor) -> Tensor:
        running = experts.cumsum(dim=1) / torch.arange(1, experts.shape[1] + 1, device=experts.device, dtype=experts.dtype).view(1, -1, 1)
        out = []
        for i, hidden in enumerate(self.hidden):
            h = F.relu(hidden(F.normalize(features[:, i], dim=1)))
            top = torch.topk(running[:, i], k=self.top_choices, dim=1).values
            out.append(self.output[0 if self.shared_output else i](torch.cat([top, h], dim=1)))
        return torch.cat(out, dim=1)

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, top_choices={self.top_choices}, shared_output={self.shared_output}"


def expert_mask(router_logits: Tensor) -> Tensor:
    """N x E booleans: expert 0 always, expert i + 1 while every router up to i says yes (sigmoid > 0.5)."""
    says_yes = router_logits > 0  # sigmoid(r) > 0.5
    first = torch.ones_like(says_yes[:, :1])
    return torch.cat([first, says_yes], dim=1).to(torch.int8).cumprod(dim=1).bool()


def routed_logits(experts: Tensor, router_logits: Tensor) -> Tensor:
    """The mean of the logits of the experts each image uses (N x C)."""
    mask = expert_mask(router_logits).to(experts.dtype)
    return (experts * mask.unsqueeze(2)).sum(1) / mask.sum(1, keepdim=True)


def experts_used(router_logits: Tensor) -> Tensor:
    """How many experts each image uses (N,): what the official prints as each expert's share."""
    return expert_mask(router_logits).sum(1)
