"""Krum and Multi-Krum (Blanchard et al., "Machine Learning with Adversaries", NeurIPS 2017).

score(i) = Σ of the squared distances from uᵢ to its m − f − 2 nearest other updates; Krum returns
the update with the lowest score, Multi-Krum the mean of the k lowest-scoring ones. Distances come
from one Gram matrix, ‖x‖² + ‖y‖² − 2x·y (2m²d FLOP), as in Flower's ``MultiKrum``, which this
equals on the same rows (Flower averages the selection weighted by ``num-examples``; we weight
every client the same).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.aggregators import name_of, register
from fedharness.aggregators._finite import accept, split_finite
from labcore.errors import InputError


def squared_distances(u: torch.Tensor) -> torch.Tensor:
    """(m, m) squared L2 distances between rows via the Gram matrix."""
    sq = (u * u).sum(dim=1)
    return (sq[:, None] + sq[None, :] - 2.0 * (u @ u.T)).clamp_min_(0.0)


def krum_scores(dist: torch.Tensor, f: int, alive: torch.Tensor | None = None) -> torch.Tensor:
    """Krum score of each row among the ``alive`` rows (others get +inf)."""
    m = dist.shape[0]
    alive = torch.ones(m, dtype=torch.bool, device=dist.device) if alive is None else alive
    n = int(alive.sum())
    closest = max(1, n - f - 2)
    d = dist.clone()
    d.fill_diagonal_(float("inf"))
    d[:, ~alive] = float("inf")
    scores = torch.topk(d, min(closest, max(n - 1, 1)), dim=1, largest=False).values.sum(dim=1)
    return torch.where(alive, scores, torch.full_like(scores, float("inf")))


def multi_krum_select(u: torch.Tensor, f: int, k: int) -> torch.Tensor:
    """Indices of the k rows with the lowest Krum scores (ascending score)."""
    scores = krum_scores(squared_distances(u), f)
    return torch.argsort(scores, stable=True)[:k]


@register("multi_krum")
@dataclass
class MultiKrum:
    """Mean of the ``k`` best-scored updates (default m − f) assuming ``f`` attackers."""

    f: int = 1
    k: int | None = None

    def __post_init__(self) -> None:
        if self.f < 0 or (self.k is not None and self.k < 1):
            raise InputError("multi_krum needs f >= 0 and k >= 1")

    def check_rows(self, m: int) -> None:
        """InputError unless the ``m`` updates of a round allow ``f`` attackers (m > 2f + 2, Blanchard et al.,
        Prop. 1) and hold ``k`` to select."""
        if m < 2 * self.f + 3:
            raise InputError(f"{name_of(self)} with f={self.f} needs at least 2f + 3 = {2 * self.f + 3} updates "
                             f"per round, got {m}; lower f or raise federation.clients_per_round")
        if self.k is not None and self.k > m:
            raise InputError(f"{name_of(self)} cannot select k={self.k} of the {m} updates of a round; "
                             "lower k or raise federation.clients_per_round")

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        u, rows = split_finite(updates, stats)
        k = self.k if self.k is not None else max(1, u.shape[0] - self.f)
        picked = multi_krum_select(u, self.f, min(k, u.shape[0]))
        accept(stats, rows, picked)
        return u[picked].mean(dim=0)


@register("krum")
@dataclass
class Krum(MultiKrum):
    """The single update with the lowest Krum score."""

    k: int | None = 1
