"""Recommendation fixtures: small interaction files and a tiny task on a few hundred ML-100K rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedharness.local_training import LocalConfig
from fedrec.interactions import from_columns, leave_one_out
from fedrec.task import RecConfig, RecommendationTask


def write_udata(path, num_users: int = 12, num_items: int = 40, per_user: int = 8, seed: int = 0):
    """A GroupLens-style u.data: user, item, rating, timestamp (tab-separated, 1-based ids)."""
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(1, num_users + 1):
        for t, i in enumerate(rng.choice(num_items, per_user, replace=False) + 1):
            lines.append(f"{u}\t{i}\t{rng.integers(1, 6)}\t{880000000 + 1000 * u + t}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def ml100k_rows():
    """The first 60 users' interactions with items 1–300 of the shipped ML-100K (a few hundred rows)."""
    from poisonlab import data
    from poisonlab.movielens import columns

    cols = columns(data.load("movielens")["train"])
    keep = (cols["user_id"] <= 60) & (cols["item_id"] <= 300)
    return {k: v[keep] for k, v in cols.items()}


def tiny_task(columns, num_fake: int = 2, **params) -> RecommendationTask:
    interactions, raw_items = from_columns(columns)
    split = leave_one_out(interactions, 20, seed=0)
    cfg = RecConfig(dim=8, num_targets=1, target_max_popularity=3, **params)
    from fedrec.task import choose_targets

    task = RecommendationTask(split, cfg, choose_targets(split, cfg, raw_items, 0), num_fake, LocalConfig(1, 2.0, 1), 0)
    torch.manual_seed(0)
    task.build_model()
    return task
