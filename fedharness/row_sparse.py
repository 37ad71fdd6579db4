"""Row-sparse aggregation: each row of an embedding table is aggregated over the clients that touched it.

In federated recommendation a client uploads only the item rows it trained (its positives and
sampled negatives). Averaging such uploads densely would count every untouched row as a zero
vote. :class:`RowSparse` wraps any aggregator (or pipeline) so that

- for every row-sparse block (a table of ``rows`` × ``dim`` in the flat vector at ``offset``), row r
  is aggregated from the rows of the clients whose upload is non-zero there (an upload that leaves
  a row unchanged has not touched it; a row nobody touched stays unchanged);
- the rest of the vector (dense shared layers) is aggregated over all clients as usual.

Pre-aggregators of a pipeline run per row too (``norm_clip`` then clips each client's row). A rule
that understands the layout itself (``row_aware = True``, e.g. hierarchical clipping, which clips
whole uploads) receives the full updates with ``row_blocks`` and ``touched`` (m, rows) in its context.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.aggregators import Aggregator
from fedharness.aggregators._finite import split_finite
from fedharness.aggregators.mean import Mean


@dataclass(frozen=True)
class RowBlock:
    """A table of ``rows`` rows of ``dim`` entries starting at ``offset`` in the flat vector."""

    offset: int
    rows: int
    dim: int

    @property
    def end(self) -> int:
        return self.offset + self.rows * self.dim

    def view(self, updates: torch.Tensor) -> torch.Tensor:
        """(m, d) → (m, rows, dim) view of this block."""
        return updates[:, self.offset:self.end].reshape(len(updates), self.rows, self.dim)


def touched_rows(updates: torch.Tensor, block: RowBlock) -> torch.Tensor:
    """(m, rows) bool: which clients changed which rows."""
    return block.view(updates).ne(0).any(dim=2)


def dense_mask(d: int, blocks: list[RowBlock]) -> torch.Tensor:
    """Coordinates outside every row-sparse block."""
    mask = torch.ones(d, dtype=torch.bool)
    for b in blocks:
        mask[b.offset:b.end] = False
    return mask


class RowSparse:
    """``inner`` applied per row over the touching clients, and over all clients on the dense rest."""

    def __init__(self, inner: Aggregator, blocks: list[RowBlock]) -> None:
        self.inner = inner
        self.blocks = blocks
        self.needs = getattr(inner, "needs", frozenset())

    def state_dict(self) -> dict[str, torch.Tensor]:
        from fedharness.aggregators import state_dict

        return state_dict(self.inner)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        from fedharness.aggregators import load_state_dict

        load_state_dict(self.inner, state)

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        u, kept = split_finite(updates, stats)
        ids = context.pop("client_ids", None)
        if ids is not None:
            context["client_ids"] = [ids[i] for i in kept]
        touched = [touched_rows(u, b) for b in self.blocks]
        if getattr(self.inner, "row_aware", False):
            return self.inner(u, stats=stats, row_blocks=self.blocks, touched=touched, **context)
        out = torch.zeros(u.shape[1], dtype=u.dtype)
        dense = dense_mask(u.shape[1], self.blocks)
        if dense.any():
            out[dense] = self.inner(u[:, dense], stats=stats, **context)
        for block, mask in zip(self.blocks, touched):
            out[block.offset:block.end] = self._block(block.view(u), mask, context).reshape(-1)
        if stats is not None:
            counts = torch.cat([m.sum(dim=0) for m in touched])
            stats["rows_touched"] = int((counts > 0).sum())
            stats["max_clients_per_row"] = int(counts.max()) if len(counts) else 0
        return out

    def _block(self, rows: torch.Tensor, touched: torch.Tensor, context: dict) -> torch.Tensor:
        """(m, R, D) updates, (m, R) touched → (R, D) per-row aggregate (0 for untouched rows)."""
        count = touched.sum(dim=0)
        if type(self.inner) is Mean:
            return (rows * touched.unsqueeze(-1)).sum(dim=0) / count.clamp_min(1).unsqueeze(-1)
        out = torch.zeros(rows.shape[1:], dtype=rows.dtype)
        ids = context.get("client_ids")
        for r in torch.nonzero(count).flatten().tolist():
            who = torch.nonzero(touched[:, r]).flatten()
            ctx = {**context, "client_ids": [ids[i] for i in who.tolist()]} if ids is not None else context
            out[r] = self.inner(rows[who, r], stats=None, **ctx)
        return out
