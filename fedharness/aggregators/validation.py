"""Validation testing: the server scores each submitted model on its held-out validation set and
rejects (or down-weights) updates that lower the score (the "testing" defense of the seed issue;
cf. the validation-based exclusion requested in flwrlabs/flower#2252).

The context callable ``validate(rows) -> scores`` returns the validation accuracy of G + uᵢ for
each row; the baseline is the current global model (a zero update). Updates scoring below
baseline − ``tolerance`` are rejected; ``mode="weight"`` weights the rest by their score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from fedharness.aggregators import register
from fedharness.aggregators._finite import accept, split_finite
from fedharness.config import finite
from labcore.errors import InputError


@register("validation")
@dataclass
class ValidationTesting:
    """Reject updates whose validation score drops more than ``tolerance`` below the global model's."""

    tolerance: float = 0.02
    mode: str = "reject"
    needs = frozenset({"validate"})

    def __post_init__(self) -> None:
        if self.mode not in ("reject", "weight"):
            raise InputError("validation mode must be 'reject' or 'weight'")
        if not finite(self.tolerance):
            raise InputError(f"validation tolerance must be a finite number, got {self.tolerance}")

    def __call__(
        self,
        updates: torch.Tensor,
        stats: dict | None = None,
        validate: Callable[[torch.Tensor], torch.Tensor] | None = None,
        **context: object,
    ) -> torch.Tensor:
        if validate is None:
            raise InputError("validation needs a server-side validate callable (context key validate)")
        u, rows = split_finite(updates, stats)
        scores = validate(torch.cat([torch.zeros_like(u[:1]), u]))
        base, scores = float(scores[0]), scores[1:]
        ok = scores >= base - self.tolerance
        if stats is not None:
            stats["validation_baseline"] = base
            stats["validation_scores"] = [round(float(s), 6) for s in scores]
        accept(stats, rows, torch.nonzero(ok).flatten())
        if not bool(ok.any()):
            return torch.zeros_like(u[0])
        weights = ok.to(u.dtype) if self.mode == "reject" else scores.to(u.dtype) * ok
        return (weights[:, None] * u).sum(dim=0) / weights.sum().clamp_min(1e-12)
