"""Bulyan (El Mhamdi et al., "The Hidden Vulnerability of Distributed Learning in Byzantium", ICML 2018).

Needs m ≥ 4f + 3. (1) Select θ = m − 2f updates by applying Krum iteratively: pick the best-scored
update, remove it, recompute the scores on the remaining set (paper, Alg. 2). (2) Per coordinate,
average the β = θ − 2f selected values closest to the coordinate-wise median of the selection.

Difference from Flower's ``Bulyan``: Flower selects the θ updates in one shot with Multi-Krum
scores computed once on the full set, instead of recomputing the scores after each removal; pass
``iterative=False`` to get Flower's selection (and its result). Flower also skips aggregation
(returns None) when m < 4f + 3; here that is an error naming the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedharness.aggregators import register
from fedharness.aggregators._finite import accept, split_finite
from fedharness.aggregators._select import middle, sorted_blocks
from fedharness.aggregators.krum import krum_scores, multi_krum_select, squared_distances
from labcore.errors import InputError


def closest_to_median_mean(u: torch.Tensor, rows: torch.Tensor, beta: int) -> torch.Tensor:
    """Per coordinate, the mean of the ``beta`` values of ``u[rows]`` closest to their median.

    In a sorted column those values are a window s[a : a + β]. Sliding the window right by one
    pays off exactly when its left end is farther from the median than the value just past its
    right end; that test is monotone in the start, so a = the number of starts where it holds.
    Where the two are exactly as far (a tie, ~1 column in 10⁶ for float32 noise), the earlier row
    of ``rows`` wins, as in a stable sort by distance (what Flower's ``argpartition`` gave there).
    """
    host, take = u.detach().cpu().numpy(), rows.cpu().numpy()
    n = len(take)
    out = np.empty(host.shape[1], dtype=host.dtype)
    for cols, s in sorted_blocks(host, take):
        med = middle(s)[:, None]
        dist = np.abs(s - med)
        a = (dist[:, : n - beta] > dist[:, beta:]).sum(axis=1)
        out[cols] = np.take_along_axis(s, a[:, None] + np.arange(beta), axis=1).mean(axis=1)
        ends = np.stack([a, np.minimum(a + beta, n - 1)], axis=1)
        d_ends, s_ends = np.take_along_axis(dist, ends, axis=1), np.take_along_axis(s, ends, axis=1)
        tie = np.flatnonzero((a < n - beta) & (d_ends[:, 0] == d_ends[:, 1]) & (s_ends[:, 0] != s_ends[:, 1]))
        if tie.size:
            j = cols.start + tie
            values = host[np.ix_(take, j)].T
            first = np.argsort(np.abs(values - med[tie]), axis=1, kind="stable")[:, :beta]
            out[j] = np.take_along_axis(values, first, axis=1).mean(axis=1)
    return torch.from_numpy(out).to(u.device)


@register("bulyan")
@dataclass
class Bulyan:
    """Bulyan over Krum with ``f`` assumed attackers."""

    f: int = 1
    iterative: bool = True

    def __post_init__(self) -> None:
        if self.f < 0:
            raise InputError(f"bulyan f must be >= 0, got {self.f}")

    def check_rows(self, m: int) -> None:
        """InputError unless a round's ``m`` updates allow ``f`` attackers (m ≥ 4f + 3)."""
        if m < 4 * self.f + 3:
            raise InputError(f"bulyan with f={self.f} needs at least {4 * self.f + 3} finite updates, got {m}; "
                             "lower f or sample more clients per round")

    def select(self, u: torch.Tensor, theta: int) -> torch.Tensor:
        if not self.iterative:
            return multi_krum_select(u, self.f, theta)
        dist = squared_distances(u)
        alive = torch.ones(u.shape[0], dtype=torch.bool, device=u.device)
        picked = []
        for _ in range(theta):
            best = int(torch.argmin(krum_scores(dist, self.f, alive)))
            picked.append(best)
            alive[best] = False
        return torch.tensor(picked, device=u.device)

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        u, rows = split_finite(updates, stats)
        self.check_rows(u.shape[0])
        theta = u.shape[0] - 2 * self.f
        picked = self.select(u, theta)
        accept(stats, rows, picked)
        return closest_to_median_mean(u, picked, theta - 2 * self.f)
