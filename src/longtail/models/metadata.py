"""The metadata MLP: an encoded metadata vector (``model.metadata``) -> an embedding joined to the image features.

As in the ISIC 2019 / 2020 winners' fusion, the embedding is concatenated to the backbone's pooled
features before the head, so the head (and every stage, cRT, LWS, tau-norm) sees one longer feature
vector. Two linear layers with ReLU: the inputs are already standardised / one-hot
(:mod:`longtail.data.metadata`), and no batch statistics are kept, so a batch of one trains too.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..core.errors import ConfigError


class MetadataMLP(nn.Module):
    """``in_dim`` encoded metadata inputs -> ``hidden``-wide embedding (Linear, ReLU, Linear, ReLU)."""

    def __init__(self, in_dim: int, hidden: int = 64) -> None:
        super().__init__()
        if in_dim < 1 or hidden < 1:
            raise ConfigError(f"the metadata MLP needs at least one input and one unit, got {in_dim} inputs and model.metadata_hidden={hidden}")
        self.in_dim = int(in_dim)
        self.out_dim = int(hidden)
        self.layers = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden), nn.ReLU(inplace=True))

    def forward(self, meta: Tensor) -> Tensor:
        return self.layers(meta)
