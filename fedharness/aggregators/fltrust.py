"""FLTrust (Cao, Fang, Liu, Gong, "FLTrust: Byzantine-robust FL via Trust Bootstrapping", NDSS 2021, Alg. 1).

The server trains on its small clean root set to get g₀ (context ``root_update``). Each update gets
trust TSᵢ = ReLU(cos(gᵢ, g₀)), is rescaled to ‖g₀‖, and the result is Σ TSᵢ·ḡᵢ / Σ TSᵢ (zero when
no update has positive trust).
"""

from __future__ import annotations

import torch

from fedharness.aggregators import register
from fedharness.aggregators._finite import accept, split_finite
from labcore.errors import InputError


@register("fltrust")
class FLTrust:
    """Needs ``root_update`` (the server's own update on its root set) in the context."""

    needs = frozenset({"root_update"})

    def __call__(
        self, updates: torch.Tensor, stats: dict | None = None, root_update: torch.Tensor | None = None, **context: object
    ) -> torch.Tensor:
        if root_update is None:
            raise InputError("fltrust needs the server's root-set update (context key root_update)")
        u, rows = split_finite(updates, stats)
        g0_norm = root_update.norm()
        norms = u.norm(dim=1).clamp_min(1e-12)
        trust = torch.relu((u @ root_update) / (norms * g0_norm.clamp_min(1e-12)))
        if stats is not None:
            stats["trust_scores"] = [round(float(t), 6) for t in trust]
        accept(stats, rows, torch.nonzero(trust > 0).flatten())
        if float(trust.sum()) == 0.0:
            return torch.zeros_like(root_update)
        rescaled = u * (g0_norm / norms)[:, None]
        return (trust[:, None] * rescaled).sum(dim=0) / trust.sum()
