"""Activation clustering on a model whose hidden layer we control: a two-blob class is flagged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedharness.detection import activation_clustering
from labcore.errors import InputError


def blobs() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Classes 0 and 2: one Gaussian blob; class 1: 70 % one blob, 30 % a far blob (the poison)."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(100, 16, generator=g)
    x1 = torch.randn(100, 16, generator=g) + 4.0
    x1[70:] = torch.randn(30, 16, generator=g) - 6.0
    x2 = torch.randn(100, 16, generator=g) - 4.0
    x = torch.cat([x0, x1, x2])
    y = torch.repeat_interleave(torch.arange(3), 100)
    return x, y, np.arange(170, 200)


def model() -> nn.Module:
    net = nn.Sequential()
    net.add_module("features", nn.Identity())
    net.add_module("head", nn.Linear(16, 3))
    return net


@pytest.mark.parametrize("reduction", ["ica", "pca"])
def test_flags_the_two_cluster_class_and_its_minority(reduction: str):
    x, y, poison = blobs()
    result = activation_clustering.detect(model(), "features", x, y, n_components=4, reduction=reduction,
                                          silhouette_threshold=0.25)
    assert result.flagged_classes == [1]
    np.testing.assert_array_equal(result.suspect_indices, poison)
    one = result.per_class[1]
    assert one.relative_size == pytest.approx(0.3)
    # ICA whitens every component to unit variance, which flattens the gap (0.29 vs 0.17); PCA keeps it.
    assert one.silhouette > 1.5 * max(result.per_class[c].silhouette for c in (0, 2))
    assert one.nearest_other_class == 2 and one.distance_ratio > 1.0  # the minority sits nearer class 2
    assert [row["class"] for row in result.table()] == [0, 1, 2]


def test_exclusionary_reclassification_confirms_poison():
    x, y, poison = blobs()

    def retrain(keep: np.ndarray) -> nn.Module:
        # A nearest-centroid classifier fitted on the kept inputs only.
        centres = torch.stack([x[torch.as_tensor(keep) & (y == c)].mean(0) for c in range(3)])
        head = nn.Linear(16, 3)
        with torch.no_grad():
            head.weight.copy_(2 * centres)
            head.bias.copy_(-(centres**2).sum(1))
        return head

    result = activation_clustering.detect(model(), "features", x, y, n_components=4, retrain=retrain)
    assert result.per_class[1].exclusionary_score == 0.0 and result.per_class[1].exclusionary_source == 2
    assert result.flagged_classes == [1]


def test_bad_layer_name_is_an_input_error():
    x, y, _ = blobs()
    with pytest.raises(InputError, match="no layer 'penultimate'"):
        activation_clustering.detect(model(), "penultimate", x, y)
