"""Blocked order statistics (``_select``) and Bulyan's closest-to-median window against brute force."""

from __future__ import annotations

import numpy as np
import torch

from fedharness.aggregators import _select
from fedharness.aggregators.bulyan import closest_to_median_mean


def _updates(m: int, seed: int = 0) -> np.ndarray:
    """m rows spanning two column blocks plus a ragged tail, with heavy tails so orders vary."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((m, 2 * _select.BLOCK + 37)) * rng.exponential(3.0, (m, 1))).astype(np.float32)


def test_reduce_sorted_sees_each_column_sorted_and_respects_rows():
    u = _updates(7)
    rows = torch.tensor([5, 0, 3])
    got = _select.reduce_sorted(torch.from_numpy(u), lambda s: s[:, 0] * 10 + s[:, -1], rows)
    ordered = np.sort(u[[5, 0, 3]], axis=0)
    np.testing.assert_array_equal(got.numpy(), ordered[0] * 10 + ordered[-1])


def test_median_equals_numpy_for_odd_and_even_m():
    for m in (9, 10):
        u = _updates(m, seed=m)
        np.testing.assert_array_equal(_select.median(torch.from_numpy(u)).numpy(), np.median(u, axis=0))


def test_closest_to_median_window_equals_brute_force():
    u = _updates(12, seed=1)
    rows = torch.tensor([0, 2, 3, 5, 6, 7, 8, 9, 11])
    sel = u[rows.numpy()]
    beta = 4
    med = np.median(sel, axis=0)
    idx = np.argsort(np.abs(sel - med), axis=0, kind="stable")[:beta]
    expected = np.take_along_axis(sel, idx, axis=0).mean(axis=0)
    got = closest_to_median_mean(torch.from_numpy(u), rows, beta).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
