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


def test_sorted_blocks_cover_every_column_sorted_in_row_subset():
    u = _updates(7)
    rows = np.array([5, 0, 3])
    got = np.concatenate([s for _, s in _select.sorted_blocks(u, rows)])
    np.testing.assert_array_equal(got, np.sort(u[rows], axis=0).T)
    spans = [cols for cols, _ in _select.sorted_blocks(u)]
    assert spans[0].start == 0 and spans[-1].stop == u.shape[1] and len(spans) == 3


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


def test_closest_to_median_tie_goes_to_the_earlier_row():
    # Median 0; with β = 2 the second value is −1 or +1, equally far: the earlier row of ``rows`` wins.
    u = torch.tensor([[3.0, 3.0], [-1.0, 1.0], [0.0, 0.0], [1.0, -1.0], [-3.0, -3.0]])
    got = closest_to_median_mean(u, torch.tensor([0, 1, 2, 3, 4]), 2)
    assert torch.equal(got, torch.tensor([-0.5, 0.5]))
    assert torch.equal(closest_to_median_mean(u, torch.tensor([3, 0, 2, 1, 4]), 2), torch.tensor([0.5, -0.5]))


def test_device_path_equals_host_path_for_median_and_trimmed_mean():
    """The accelerator path (``torch.sort``) gives the host path's values, exercised here on CPU tensors."""
    for m in (9, 10):
        u = torch.from_numpy(_updates(m, seed=m + 1))
        np.testing.assert_allclose(
            _select.reduce_sorted_on_device(u, _select.middle).numpy(), _select.median(u).numpy(), rtol=0, atol=0)
        trim = lambda s: s[:, 2 : m - 2].mean(axis=1)  # noqa: E731
        np.testing.assert_allclose(
            _select.reduce_sorted_on_device(u, trim).numpy(), _select.reduce_sorted(u, trim).numpy(), rtol=1e-6, atol=1e-6)
