"""Order statistics along the client axis, shared by median, trimmed mean and Bulyan.

Every coordinate's m client values are sorted, one block of columns at a time: the block is
transposed to a contiguous (block, m) array that stays in cache, each row is sorted with numpy's
SIMD sort (x86-simd-sort / Highway since numpy 2), and a reducer turns the sorted rows into the
block's outputs. At m=100, d=1M this is ~8× faster on CPU than ``np.median`` / ``np.partition``
along axis 0, which walk strided columns with a scalar two-pivot introselect; torch's CPU
``sort``/``kthvalue`` are slower still, and torch ops on small blocks lose time in their thread
pool on a busy machine; a thread pool over blocks gained nothing on 2 shared cores. Accelerator
tensors are sorted on their device with ``torch.sort`` along the client axis (one pass, no host copy);
the reducers index and average the sorted rows the same way on both paths.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch

BLOCK = 4096


def sorted_blocks(host: np.ndarray, rows: np.ndarray | None = None) -> Iterator[tuple[slice, np.ndarray]]:
    """(columns, s) per block of columns of ``host[rows]``; row j of ``s``: column j's values, ascending."""
    for start in range(0, host.shape[1], BLOCK):
        cols = slice(start, min(start + BLOCK, host.shape[1]))
        s = np.ascontiguousarray((host[:, cols] if rows is None else host[rows, cols]).T)
        s.sort(axis=1)
        yield cols, s


def reduce_sorted(u: torch.Tensor, reduce: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    """``reduce(s)`` over the rows of ``u`` sorted per coordinate: numpy blocks on CPU, ``torch.sort`` elsewhere."""
    if u.device.type != "cpu":
        return reduce_sorted_on_device(u, reduce)
    host = u.detach().numpy()
    out = np.empty(host.shape[1], dtype=host.dtype)
    for cols, s in sorted_blocks(host):
        out[cols] = reduce(s)
    return torch.from_numpy(out).to(u.device)


def reduce_sorted_on_device(u: torch.Tensor, reduce: Callable) -> torch.Tensor:
    """The accelerator path of :func:`reduce_sorted`: ``reduce`` receives the (d, m) sorted tensor."""
    return reduce(torch.sort(u.detach(), dim=0).values.T)


def middle(s: np.ndarray) -> np.ndarray:
    """Median of each sorted row; the mean of the two middle values when the row length is even."""
    m = s.shape[1]
    return (s[:, (m - 1) // 2] + s[:, m // 2]) / 2


def median(u: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median of the rows of ``u`` (as ``np.median(u, axis=0)``)."""
    return reduce_sorted(u, middle)
