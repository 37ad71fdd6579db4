"""Bucketing (Karimireddy, He, Jaggi, "Byzantine-Robust Learning on Heterogeneous Datasets via
Bucketing", ICLR 2022, Alg. 1): shuffle the m updates, average consecutive buckets of size s.

A pre-aggregator: (m, d) → (⌈m/s⌉, d), to be composed in front of a robust rule. The shuffle is
seeded by (seed, round). Called on its own it averages the bucket means, i.e. (about) the plain mean, so a
config refuses it as the aggregator (``pre_only``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.aggregators import register
from fedharness.aggregators._finite import drop_nonfinite, round_generator
from labcore.errors import InputError


@register("bucketing")
@dataclass
class Bucketing:
    """Bucket size ``s``."""

    s: int = 2
    mixes_rows = True
    pre_only = True

    def __post_init__(self) -> None:
        if self.s < 1:
            raise InputError("bucketing s must be >= 1")

    def rows_out(self, m: int) -> int:
        """The buckets ``m`` updates make: ⌈m/s⌉."""
        return -(-m // self.s)

    def transform(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        u = drop_nonfinite(updates, stats)
        perm = torch.randperm(u.shape[0], generator=round_generator(context, salt=17)).to(u.device)
        return torch.stack([chunk.mean(dim=0) for chunk in u[perm].split(self.s)])

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        return self.transform(updates, stats, **context).mean(dim=0)
