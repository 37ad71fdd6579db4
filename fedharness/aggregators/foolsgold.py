"""FoolsGold (Fung, Yoon, Beschastnikh, "The Limitations of Federated Learning in Sybil Settings",
RAID 2020, Alg. 1): down-weight clients whose update histories are too similar (sybils).

Each client's history Hᵢ is the sum of its past updates (context ``client_ids`` names the rows).
With cᵢⱼ = cos(Hᵢ, Hⱼ) and vᵢ = maxⱼ cᵢⱼ: pardoning cᵢⱼ ← cᵢⱼ·vᵢ/vⱼ when vⱼ > vᵢ; αᵢ = 1 − maxⱼ cᵢⱼ,
clipped to [0, 1], divided by max α, then the logit αᵢ ← κ(ln(αᵢ/(1 − αᵢ)) + 0.5) clipped to [0, 1].
The result is Σ αᵢuᵢ / Σ αᵢ. The histories live in the aggregator object and travel in the run's
checkpoints (``state_dict``), so a resumed run weighs clients as the uninterrupted one does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from fedharness.aggregators import register
from fedharness.aggregators._finite import accept, split_finite
from fedharness.config import positive
from labcore.errors import InputError


def foolsgold_weights(history: torch.Tensor, kappa: float = 1.0) -> torch.Tensor:
    """αᵢ from the (m, d) client histories (Alg. 1, lines 5–21)."""
    m = history.shape[0]
    unit = history / history.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cs = unit @ unit.T - torch.eye(m, dtype=history.dtype, device=history.device) * 2.0
    v = cs.max(dim=1).values
    pardon = (v[None, :] > v[:, None]) & (v[None, :] > 0)
    cs = torch.where(pardon, cs * v[:, None] / v[None, :].clamp_min(1e-12), cs)
    alpha = (1.0 - cs.max(dim=1).values).clamp(0.0, 1.0)
    alpha = alpha / alpha.max().clamp_min(1e-12)
    alpha = torch.where(alpha >= 1.0, torch.full_like(alpha, 0.99), alpha)
    logit = kappa * (torch.log(alpha / (1.0 - alpha)) + 0.5)
    return torch.nan_to_num(logit, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)


@register("foolsgold")
@dataclass
class FoolsGold:
    """Logit confidence ``kappa``; needs ``client_ids`` in the context."""

    kappa: float = 1.0
    history: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not positive(self.kappa):
            raise InputError(f"foolsgold kappa must be a finite number > 0, got {self.kappa}")

    def __call__(
        self, updates: torch.Tensor, stats: dict | None = None, client_ids: list[int] | None = None, **context: object
    ) -> torch.Tensor:
        u, rows = split_finite(updates, stats)
        ids = [client_ids[r] for r in rows] if client_ids is not None else rows
        for cid, row in zip(ids, u):
            self.history[cid] = self.history.get(cid, torch.zeros_like(row)) + row
        alpha = foolsgold_weights(torch.stack([self.history[c] for c in ids]), self.kappa)
        if stats is not None:
            stats["foolsgold_weights"] = [round(float(a), 6) for a in alpha]
        accept(stats, rows, torch.nonzero(alpha > 0).flatten())
        if float(alpha.sum()) == 0.0:
            return torch.zeros_like(u[0])
        return (alpha[:, None] * u).sum(dim=0) / alpha.sum()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"history.{cid}": h for cid, h in self.history.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.history = {int(k.split(".", 1)[1]): v.clone() for k, v in state.items() if k.startswith("history.")}
