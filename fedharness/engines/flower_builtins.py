"""Flower's built-in robust aggregation rules applied to a stack of updates, as cross-checks.

Each function runs the body of the matching ``flwr.serverapp.strategy`` class's ``aggregate_train``
(the module-level helpers Flower itself calls) on rows of a numpy (m, d) array, every client
reporting the same ``num-examples``. Used by the equality tests and ``scripts/bench_aggregators.py``.
flwr is imported lazily (optional extra).
"""

from __future__ import annotations

import numpy as np


def records(updates: np.ndarray) -> list:
    """One RecordDict per row, as a client reply's content: arrays + num-examples = 1."""
    from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

    return [RecordDict({"arrays": ArrayRecord({"update": Array(row)}), "metrics": MetricRecord({"num-examples": 1})})
            for row in updates]


def fed_median(updates: np.ndarray) -> np.ndarray:
    """``FedMedian``: ``np.median`` over the stacked layers (flwr.server.strategy.aggregate)."""
    from flwr.server.strategy.aggregate import aggregate_median

    return aggregate_median([([row], 1) for row in updates])[0]


def fed_trimmed_avg(updates: np.ndarray, beta: float) -> np.ndarray:
    """``FedTrimmedAvg(beta)``."""
    from flwr.serverapp.strategy.fedtrimmedavg import trim_mean

    return trim_mean(updates, beta)


def multi_krum(contents: list, f: int, k: int) -> np.ndarray:
    """``MultiKrum(num_malicious_nodes=f, num_nodes_to_select=k)`` (``Krum`` is k = 1)."""
    from flwr.serverapp.strategy.multikrum import select_multikrum
    from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

    chosen = select_multikrum(contents, num_malicious_nodes=f, num_nodes_to_select=k)
    return aggregate_arrayrecords(chosen, "num-examples")["update"].numpy()


def bulyan(contents: list, f: int) -> np.ndarray:
    """``Bulyan(num_malicious_nodes=f)`` with its default Multi-Krum selection."""
    from flwr.serverapp.strategy.bulyan import aggregate_n_closest_weights
    from flwr.serverapp.strategy.multikrum import select_multikrum

    theta = len(contents) - 2 * f
    chosen = select_multikrum(contents, f, theta)
    arrays = [c["arrays"].to_numpy_ndarrays() for c in chosen]
    med = [np.median(a, axis=0) for a in zip(*arrays)]
    return aggregate_n_closest_weights(med, arrays, theta - 2 * f)[0]
