"""Split a labelled dataset over n clients: IID, or non-IID by a Dirichlet(α) prior per class.

The Dirichlet split follows Hsu et al. (2019), as used by Bagdasaryan et al. (α = 0.9): for each
class c, proportions p_c ~ Dir(α·1ₙ) decide how its samples spread over the n clients.
"""

from __future__ import annotations

import numpy as np


def iid(num_samples: int, num_clients: int, seed: int) -> list[np.ndarray]:
    """Shuffle, then cut into ``num_clients`` shards whose sizes differ by at most one."""
    rng = np.random.default_rng(seed)
    return [np.sort(s) for s in np.array_split(rng.permutation(num_samples), num_clients)]


def dirichlet(
    labels: np.ndarray, num_clients: int, alpha: float, seed: int, min_size: int = 1, max_tries: int = 100
) -> list[np.ndarray]:
    """Label-skewed split; redrawn until every client holds at least ``min_size`` samples."""
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"dirichlet alpha must be a finite number > 0, got {alpha}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    for _ in range(max_tries):
        shards: list[list[int]] = [[] for _ in range(num_clients)]
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha))) * len(idx)).astype(int)[:-1]
            for client, part in enumerate(np.split(idx, cuts)):
                shards[client].extend(part.tolist())
        if min(len(s) for s in shards) >= min_size:
            return [np.sort(np.asarray(s, dtype=np.int64)) for s in shards]
    raise ValueError(
        f"no Dirichlet(α={alpha}) split gave every one of {num_clients} clients {min_size}+ samples; "
        "raise alpha or lower the number of clients"
    )


def split(labels: np.ndarray, num_clients: int, kind: str, alpha: float, seed: int) -> list[np.ndarray]:
    """Dispatch on ``kind`` ('iid' or 'dirichlet')."""
    if kind == "iid":
        return iid(len(labels), num_clients, seed)
    if kind == "dirichlet":
        return dirichlet(labels, num_clients, alpha, seed)
    raise ValueError(f"unknown partition {kind!r}; use 'iid' or 'dirichlet'")
