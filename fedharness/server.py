"""The server rule of Bagdasaryan et al. (2020), eq. (1): G ← G + (η/n)·Σ_{i∈S}(Lᵢ − G).

With |S| = m the sum equals m·mean(Lᵢ − G), so any robust aggregator replacing the mean plugs in as
G ← G + (η·m/n)·agg(U). Plain FedAvg is η·m/n = 1.
"""

from __future__ import annotations

import torch

from fedharness.aggregators import Aggregator


def server_step(
    global_vec: torch.Tensor,
    local_vecs: torch.Tensor,
    *,
    eta: float,
    num_clients: int,
    aggregator: Aggregator,
    stats: dict | None = None,
    **context: object,
) -> torch.Tensor:
    """New global vector from the m submitted local models ``local_vecs`` (m, d).

    Client-reported example counts never enter: every sampled client weighs the same.
    """
    updates = local_vecs - global_vec.unsqueeze(0)
    aggregated = aggregator(updates, stats=stats, global_vec=global_vec, **context)
    m = local_vecs.shape[0]
    return global_vec + (eta * m / num_clients) * aggregated
