"""Norm clipping (norm bounding; Sun et al., "Can You Really Backdoor Federated Learning?", 2019).

Each update is scaled by min(1, ρ/‖uᵢ‖). ρ is fixed, or adaptive: the ``quantile`` of this round's
update norms (0.5 = the median norm, as FLAME clips). As an aggregator it clips, then averages; as a
pre-aggregator (``transform``) it clips in front of another rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.aggregators import register
from fedharness.aggregators._finite import drop_nonfinite
from fedharness.config import positive
from labcore.errors import InputError


def clip_rows(u: torch.Tensor, rho: float | torch.Tensor) -> torch.Tensor:
    """uᵢ·min(1, ρ/‖uᵢ‖)."""
    norms = u.norm(dim=1, keepdim=True)
    return u * torch.clamp(rho / norms.clamp_min(1e-12), max=1.0)


@register("norm_clip")
@dataclass
class NormClip:
    """Clip to ``rho``, or to the ``quantile`` of the round's norms when ``rho`` is not given."""

    rho: float | None = None
    quantile: float | None = None

    def __post_init__(self) -> None:
        if (self.rho is None) == (self.quantile is None):
            raise InputError("norm_clip needs exactly one of rho (fixed bound) or quantile (adaptive)")
        if self.rho is not None and not positive(self.rho):
            raise InputError(f"norm_clip rho must be a finite number > 0, got {self.rho}")
        if self.quantile is not None and not 0 < self.quantile <= 1:
            raise InputError("norm_clip quantile must be in (0, 1]")

    def bound(self, u: torch.Tensor) -> float:
        if self.rho is not None:
            return self.rho
        return float(torch.quantile(u.norm(dim=1), self.quantile))

    def transform(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        u = drop_nonfinite(updates, stats)
        rho = self.bound(u)
        if stats is not None:
            stats["clip_bound"] = rho
            stats["clipped"] = int((u.norm(dim=1) > rho).sum())
        return clip_rows(u, rho)

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        return self.transform(updates, stats, **context).mean(dim=0)
