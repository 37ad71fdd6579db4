"""Coordinate-wise median (Yin et al., "Byzantine-Robust Distributed Learning", ICML 2018, Alg. 1).

Equals Flower's ``FedMedian`` (``np.median`` over the stacked client models) on the same rows.
"""

from __future__ import annotations

import torch

from fedharness.aggregators import register
from fedharness.aggregators._finite import drop_nonfinite
from fedharness.aggregators._select import median


@register("median")
class Median:
    """med{uᵢⱼ}ᵢ for every coordinate j (even m: mean of the two middle values)."""

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        return median(drop_nonfinite(updates, stats))
