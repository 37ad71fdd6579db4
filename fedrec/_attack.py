"""What the recommender attacks share: the task check and a sparse upload of chosen item rows."""

from __future__ import annotations

import numpy as np
import torch

from fedharness.attacks import AttackContext
from labcore.errors import InputError


def rec_task(ctx: AttackContext):
    """The recommendation task behind ``ctx`` (these attacks need its models and item table)."""
    from fedrec.task import RecommendationTask

    if not isinstance(ctx.task, RecommendationTask):
        raise InputError(f"this attack needs task.name: recommendation, not {type(ctx.task).__name__}")
    return ctx.task


def row_upload(task, global_vec: torch.Tensor, rows: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """A local vector that changes only the item ``rows`` (the item table leads the vector)."""
    local = global_vec.clone()
    dim = task.model.item.shape[1]
    table = local[: task.split.num_items * dim].view(task.split.num_items, dim)
    table[rows] += deltas
    return local


def scale_rows(deltas: torch.Tensor, row_norm: float) -> torch.Tensor:
    """Rescale so the largest row has norm ``row_norm`` (the attack's bounded step)."""
    return deltas * (row_norm / deltas.norm(dim=1).max().clamp_min(1e-12))


def random_profiles(task, rng: np.random.Generator, count: int, size: int, pool: np.ndarray | None = None) -> list[np.ndarray]:
    """``count`` fabricated positive sets of ``size`` items (from ``pool``, else all items)."""
    if size < 1:
        raise InputError("a fabricated user needs profile_size >= 1 (an empty user cannot train)")
    pool = np.arange(task.split.num_items) if pool is None else pool
    return [np.sort(rng.choice(pool, min(size, len(pool)), replace=False)) for _ in range(count)]
