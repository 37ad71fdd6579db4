"""Nearest-neighbour mixing (Allouah et al., "Fixing by Mixing", AISTATS 2023, Alg. 1).

Each update is replaced by the average of its m − f nearest updates (itself included), which
shrinks the heterogeneity a robust rule composed after it has to absorb. Called on its own it averages the
mixed updates, no robust rule, so a config refuses it as the aggregator (``pre_only``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.aggregators import register
from fedharness.aggregators._finite import drop_nonfinite
from fedharness.aggregators.krum import squared_distances
from labcore.errors import InputError


@register("nnm")
@dataclass
class NearestNeighbourMixing:
    """``f`` assumed attackers; a pre-aggregator (m, d) → (m, d)."""

    f: int = 1
    mixes_rows = True
    pre_only = True

    def __post_init__(self) -> None:
        if self.f < 0:
            raise InputError("nnm f must be >= 0")

    def transform(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        u = drop_nonfinite(updates, stats)
        k = max(1, u.shape[0] - self.f)
        dist = squared_distances(u).fill_diagonal_(-1.0)
        idx = torch.topk(dist, k, dim=1, largest=False).indices
        mix = torch.zeros_like(dist).scatter_(1, idx, 1.0 / k)
        return mix @ u

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        return self.transform(updates, stats, **context).mean(dim=0)
