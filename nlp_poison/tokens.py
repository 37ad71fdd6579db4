"""Token rows padded into a batch (the search and the collision term work on id rows, not text)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Encoded:
    ids: torch.Tensor
    mask: torch.Tensor


def pad(rows: list[list[int]], pad_id: int) -> Encoded:
    """Right-pad id rows to the longest; mask 1 on real tokens."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return Encoded(ids, mask)
