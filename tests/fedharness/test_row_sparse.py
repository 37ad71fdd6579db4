"""Row-sparse aggregation equals a dense hand computation over each row's touching clients."""

import torch

from fedharness import aggregators
from fedharness.row_sparse import RowBlock, RowSparse, touched_rows

# 3 clients; a table of 3 rows × 2 at offset 0, then 2 dense coordinates.
U = torch.tensor([
    [1.0, 2.0, 0.0, 0.0, 5.0, 1.0, 0.3, 0.6],   # touches rows 0 and 2
    [3.0, 4.0, 7.0, 1.0, 0.0, 0.0, 0.9, 0.0],   # touches rows 0 and 1
    [0.0, 0.0, 0.0, 0.0, -1.0, 3.0, 0.0, 0.3],  # touches row 2
])
BLOCK = RowBlock(0, 3, 2)


def test_touched_rows_are_the_non_zero_ones():
    assert touched_rows(U, BLOCK).tolist() == [[True, False, True], [True, True, False], [False, False, True]]


def test_mean_per_row_equals_the_hand_computation():
    out = RowSparse(aggregators.get("mean"), [BLOCK])(U)
    expected = torch.tensor([2.0, 3.0, 7.0, 1.0, 2.0, 2.0, 0.4, 0.3])  # row 0: (c0+c1)/2, row 1: c1, row 2: (c0+c2)/2
    assert torch.allclose(out, expected)


def test_median_per_row_sees_only_touching_clients():
    U2 = torch.cat([U, torch.tensor([[0.0, 0.0, 1.0, 1.0, 9.0, 9.0, 0.0, 0.0]])])  # a 4th client touches rows 1, 2
    out = RowSparse(aggregators.get("median"), [BLOCK])(U2)
    # row 1: median of c1 (7, 1) and c3 (1, 1) → (4, 1); row 2: median of c0, c2, c3 → (5, 3);
    # dense coordinates over all 4 clients: median of (0.3, 0.9, 0, 0) and (0.6, 0, 0.3, 0) → (0.15, 0.15).
    expected = torch.tensor([2.0, 3.0, 4.0, 1.0, 5.0, 3.0])
    assert torch.allclose(out[:6], expected)
    assert torch.allclose(out[6:], torch.tensor([0.15, 0.15]))


def test_an_untouched_row_stays_unchanged_and_a_dense_mean_would_differ():
    U3 = U.clone()
    U3[:, 2:4] = 0.0
    out = RowSparse(aggregators.get("mean"), [BLOCK])(U3)
    assert torch.equal(out[2:4], torch.zeros(2))
    assert not torch.allclose(out, U3.mean(dim=0))
