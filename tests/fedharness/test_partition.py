import numpy as np
import pytest

from fedharness import partition


def test_iid_covers_every_sample_once_with_balanced_sizes():
    shards = partition.iid(1003, 10, seed=1)
    joined = np.concatenate(shards)
    assert sorted(joined.tolist()) == list(range(1003))
    assert {len(s) for s in shards} == {100, 101}


def test_dirichlet_is_label_skewed_and_reproducible():
    labels = np.repeat(np.arange(10), 200)
    a = partition.dirichlet(labels, 20, alpha=0.1, seed=3)
    b = partition.dirichlet(labels, 20, alpha=0.1, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert sorted(np.concatenate(a).tolist()) == list(range(2000))
    # With α = 0.1 most clients are dominated by few classes; IID clients see ~all 10.
    dominant = [np.bincount(labels[s], minlength=10).max() / len(s) for s in a]
    assert np.median(dominant) > 0.5


def test_dirichlet_rejects_nonpositive_alpha():
    with pytest.raises(ValueError, match="alpha"):
        partition.dirichlet(np.zeros(10, dtype=int), 2, alpha=0.0, seed=0)
