"""Plain mean of client updates (FedAvg with uniform weights; client-reported sizes are ignored)."""

from __future__ import annotations

import torch

from fedharness.aggregators import register
from fedharness.aggregators._finite import drop_nonfinite


@register("mean")
class Mean:
    """(1/m)·Σᵢ uᵢ over the finite rows."""

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        return drop_nonfinite(updates, stats).mean(dim=0)
