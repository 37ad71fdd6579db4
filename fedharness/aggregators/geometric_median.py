"""Geometric median by smoothed Weiszfeld iterations (RFA: Pillutla, Kakade, Harchaoui, IEEE TSP 2022, Alg. 2).

z ← Σᵢ βᵢ uᵢ / Σᵢ βᵢ with βᵢ = 1 / max(ν, ‖z − uᵢ‖), from z₀ = mean, until the objective
Σ‖z − uᵢ‖ changes by less than ``tol`` (relative) or after ``iters`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.aggregators import register
from fedharness.aggregators._finite import drop_nonfinite
from fedharness.config import finite, positive
from labcore.errors import InputError


def weiszfeld(u: torch.Tensor, iters: int, nu: float, tol: float) -> tuple[torch.Tensor, int]:
    """(geometric median estimate, iterations run)."""
    z = u.mean(dim=0)
    objective = (u - z).norm(dim=1).sum()
    for step in range(1, iters + 1):
        beta = 1.0 / (u - z).norm(dim=1).clamp_min(nu)
        z = (beta[:, None] * u).sum(dim=0) / beta.sum()
        new_objective = (u - z).norm(dim=1).sum()
        if (objective - new_objective).abs() <= tol * new_objective:
            return z, step
        objective = new_objective
    return z, iters


@register("geometric_median")
@dataclass
class GeometricMedian:
    """argmin_z Σᵢ‖z − uᵢ‖, smoothed by ν."""

    iters: int = 100
    nu: float = 1e-6
    tol: float = 1e-6

    def __post_init__(self) -> None:
        if self.iters < 1 or not positive(self.nu) or not (finite(self.tol) and self.tol >= 0):
            raise InputError(f"geometric_median needs iters >= 1, a finite nu > 0 and tol >= 0, got iters={self.iters}, "
                             f"nu={self.nu}, tol={self.tol}")

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        z, steps = weiszfeld(drop_nonfinite(updates, stats), self.iters, self.nu, self.tol)
        if stats is not None:
            stats["weiszfeld_iterations"] = steps
        return z
