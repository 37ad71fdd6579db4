"""Rejection of non-finite client updates, shared by every aggregator, and row bookkeeping.

Aggregators note which input rows they used in ``stats["accepted_rows"]`` (indices into the rows
they were given); the simulation maps them to client ids in the round record.
"""

from __future__ import annotations

import torch


def finite_rows(updates: torch.Tensor) -> torch.Tensor:
    """Boolean mask (m,) of rows with no NaN/Inf entry.

    A row with a NaN/Inf entry has a non-finite sum; only rows whose sum is non-finite (that, or an
    overflow of finite values) get the exact per-entry check. One reduction instead of an (m, d)
    boolean pass: ~25× faster on CPU at m=100, d=1M.
    """
    keep = torch.isfinite(updates.sum(dim=1))
    if not bool(keep.all()):
        suspect = torch.nonzero(~keep).flatten()
        keep[suspect] = torch.isfinite(updates[suspect]).all(dim=1)
    return keep


def split_finite(updates: torch.Tensor, stats: dict | None = None) -> tuple[torch.Tensor, list[int]]:
    """(finite rows, their indices in ``updates``); counts the rejected rows in ``stats``."""
    keep = finite_rows(updates)
    rejected = int((~keep).sum())
    if stats is not None:
        stats["rejected_nonfinite"] = stats.get("rejected_nonfinite", 0) + rejected
        if rejected:
            stats["nonfinite_rows"] = torch.nonzero(~keep).flatten().tolist()
    if not bool(keep.any()):
        raise ValueError("every client update is NaN/Inf; nothing to aggregate")
    rows = torch.nonzero(keep).flatten().tolist()
    return (updates[keep] if rejected else updates), rows


def drop_nonfinite(updates: torch.Tensor, stats: dict | None = None) -> torch.Tensor:
    """Remove rows with NaN/Inf and record how many were rejected in ``stats`` (round metrics)."""
    return split_finite(updates, stats)[0]


def accept(stats: dict | None, rows: list[int], picked: torch.Tensor | list[int]) -> None:
    """Record that the rule used rows ``picked`` (indices into the finite rows ``rows``)."""
    if stats is not None:
        picked = picked.tolist() if isinstance(picked, torch.Tensor) else list(picked)
        stats["accepted_rows"] = sorted(rows[int(i)] for i in picked)


def round_generator(context: dict, salt: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded from (seed, round, salt) in the context, so noise is reproducible."""
    seed = int(context.get("seed", 0))
    round_index = int(context.get("round_index", 0))
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + round_index * 7_919 + salt) % (2**63 - 1))
    return g
