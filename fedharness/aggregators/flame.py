"""FLAME (Nguyen et al., "FLAME: Taming Backdoors in Federated Learning", USENIX Security 2022, Alg. 1).

1. HDBSCAN over the pairwise cosine distances of the updates, min cluster size m/2 + 1: the
   majority cluster is admitted, outliers are dropped.
2. Clipping: admitted updates are scaled to at most S = the median norm of all updates.
3. Adaptive noise: the mean of the clipped updates gets N(0, (λ·S)²) (λ = 0.001 for image tasks).
Noise is seeded by (seed, round).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import HDBSCAN

from fedharness.aggregators import register
from fedharness.aggregators._finite import accept, round_generator, split_finite
from fedharness.aggregators.norm_clip import clip_rows
from fedharness.config import finite
from labcore.errors import InputError


def cosine_distances(u: torch.Tensor) -> np.ndarray:
    """(m, m) 1 − cos(uᵢ, uⱼ) in float64 for HDBSCAN's precomputed metric."""
    unit = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)
    d = (1.0 - unit @ unit.T).double().clamp_min(0.0).cpu().numpy()
    np.fill_diagonal(d, 0.0)
    return (d + d.T) / 2


def majority_cluster(u: torch.Tensor) -> np.ndarray:
    """Indices of the rows in HDBSCAN's largest cluster (all rows if it finds none)."""
    m = u.shape[0]
    if m < 3:
        return np.arange(m)
    labels = HDBSCAN(
        min_cluster_size=m // 2 + 1, min_samples=1, metric="precomputed", allow_single_cluster=True, copy=True
    ).fit_predict(cosine_distances(u))
    clustered = labels[labels >= 0]
    if clustered.size == 0:
        return np.arange(m)
    return np.flatnonzero(labels == np.bincount(clustered).argmax())


@register("flame")
@dataclass
class Flame:
    """Noise level ``noise_lambda`` (λ)."""

    noise_lambda: float = 0.001

    def __post_init__(self) -> None:
        if not (finite(self.noise_lambda) and self.noise_lambda >= 0):
            raise InputError(f"flame noise_lambda must be a finite number >= 0, got {self.noise_lambda}")

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        u, rows = split_finite(updates, stats)
        admitted = torch.as_tensor(majority_cluster(u), dtype=torch.long, device=u.device)
        accept(stats, rows, admitted)
        bound = u.norm(dim=1).median()
        if stats is not None:
            stats["clip_bound"] = float(bound)
        mean = clip_rows(u[admitted], bound).mean(dim=0)
        g = round_generator(context, salt=19, device=u.device)
        return mean + torch.randn(mean.shape, generator=g, device=u.device, dtype=u.dtype) * (self.noise_lambda * bound)
