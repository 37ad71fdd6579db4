"""Rejection of non-finite client updates, shared by every aggregator."""

from __future__ import annotations

import torch


def finite_rows(updates: torch.Tensor) -> torch.Tensor:
    """Boolean mask (m,) of rows with no NaN/Inf entry."""
    return torch.isfinite(updates).all(dim=1)


def drop_nonfinite(updates: torch.Tensor, stats: dict | None = None) -> torch.Tensor:
    """Remove rows with NaN/Inf and record how many were rejected in ``stats`` (round metrics)."""
    keep = finite_rows(updates)
    rejected = int((~keep).sum())
    if stats is not None:
        stats["rejected_nonfinite"] = stats.get("rejected_nonfinite", 0) + rejected
    if keep.sum() == 0:
        raise ValueError("every client update is NaN/Inf; nothing to aggregate")
    return updates[keep] if rejected else updates
