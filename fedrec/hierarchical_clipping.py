"""Hierarchical gradient clipping with sparsified updating (Yuan et al., SIGIR 2023, the countermeasure).

The paper names the defense; its exact form is our reconstruction (marked below):

1. **Row level**: every item row of every upload is clipped to norm ρ_row.
2. **Upload level**: each whole upload (all its item rows and shared layers) is then clipped to ρ_up.
3. **Sparsified updating** (our reading): an item row moves by Σ(clipped rows of its touching
   clients) / max(count, κ): a row touched by fewer than κ clients moves only count/κ of their mean,
   so a handful of clients cannot move one item far in one round. Dense layers take the plain mean.

Bounds: fixed (``row_bound``, ``upload_bound``), or, when not given, the ``row_quantile`` (0.99) of
this round's touched-row norms and the ``upload_quantile`` (0.95) of its upload norms (our choice:
adaptive bounds need no tuning per data set; the paper's values are not known to us). Median bounds
(0.5/0.5) cost 17 points of HR@10 on ML-100K after 10 rounds (0.36 vs 0.53): clipping half of all
benign rows every round slows learning; the 0.99/0.95 quantiles clip only the outliers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.aggregators import register
from fedharness.row_sparse import RowBlock, dense_mask
from labcore.errors import InputError


def clip_norm(x: torch.Tensor, bound: float | torch.Tensor, dim: int) -> torch.Tensor:
    """x·min(1, bound/‖x‖) along ``dim``."""
    return x * torch.clamp(bound / x.norm(dim=dim, keepdim=True).clamp_min(1e-12), max=1.0)


@register("hierarchical_clip")
@dataclass
class HierarchicalClip:
    """Row clip, upload clip, then per-row sum / max(count, ``min_clients``)."""

    row_bound: float | None = None
    upload_bound: float | None = None
    row_quantile: float = 0.99
    upload_quantile: float = 0.95
    min_clients: int = 5
    row_aware = True

    def __post_init__(self) -> None:
        for name in ("row_bound", "upload_bound"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise InputError(f"hierarchical_clip {name} must be > 0")
        if not (0 < self.row_quantile <= 1 and 0 < self.upload_quantile <= 1):
            raise InputError("hierarchical_clip row_quantile and upload_quantile must be in (0, 1]")
        if self.min_clients < 1:
            raise InputError("hierarchical_clip min_clients must be >= 1")

    def clip(self, updates: torch.Tensor, blocks: list[RowBlock], touched: list[torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """Steps 1 and 2: every touched row ≤ ρ_row, then every upload ≤ ρ_up."""
        u = updates.clone()
        info: dict = {}
        for block, mask in zip(blocks, touched):
            rows = block.view(u)
            norms = rows.norm(dim=2)
            bound = self.row_bound if self.row_bound is not None else float(torch.quantile(norms[mask], self.row_quantile)) if mask.any() else 1.0
            u[:, block.offset:block.end] = clip_norm(rows, bound, dim=2).reshape(len(u), -1)
            info["row_bound"] = bound
        up = self.upload_bound if self.upload_bound is not None else float(torch.quantile(u.norm(dim=1), self.upload_quantile))
        info["upload_bound"] = up
        return clip_norm(u, up, dim=1), info

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, row_blocks: list[RowBlock] | None = None,
                 touched: list[torch.Tensor] | None = None, **context: object) -> torch.Tensor:
        if row_blocks is None or touched is None:
            raise InputError("hierarchical_clip needs a row-sparse task (a federated recommender)")
        u, info = self.clip(updates, row_blocks, touched)
        out = torch.zeros(u.shape[1], dtype=u.dtype)
        dense = dense_mask(u.shape[1], row_blocks)
        if dense.any():
            out[dense] = u[:, dense].mean(dim=0)
        for block, mask in zip(row_blocks, touched):
            summed = (block.view(u) * mask.unsqueeze(-1)).sum(dim=0)
            out[block.offset:block.end] = (summed / mask.sum(dim=0).clamp_min(self.min_clients).unsqueeze(-1)).reshape(-1)
        if stats is not None:
            stats.update(info)
        return out
