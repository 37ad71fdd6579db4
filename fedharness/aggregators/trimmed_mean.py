"""Coordinate-wise trimmed mean (Yin et al., ICML 2018, Alg. 2).

Per coordinate, drop the ⌊β·m⌋ largest and ⌊β·m⌋ smallest values and average the rest; equals
Flower's ``FedTrimmedAvg(beta)`` on the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.aggregators import register
from fedharness.aggregators._finite import drop_nonfinite
from fedharness.aggregators._select import reduce_sorted
from labcore.errors import InputError


@register("trimmed_mean")
@dataclass
class TrimmedMean:
    """β ∈ [0, 0.5): the fraction cut from each tail."""

    beta: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta < 0.5:
            raise InputError(f"trimmed_mean beta must be in [0, 0.5), got {self.beta}")

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        u = drop_nonfinite(updates, stats)
        m = u.shape[0]
        k = int(self.beta * m)
        return reduce_sorted(u, lambda s: s[:, k : m - k].mean(axis=1))
