"""A tiny provider state (random images, 5 epochs would be slow: models are untrained skeletons)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearning_verify import training
from unlearning_verify.providers import ProviderState


@pytest.fixture()
def state() -> ProviderState:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(120, 1, 8, 8, generator=g) * 255).round() / 255
    y = torch.arange(120) % 10
    forget = np.zeros(120, dtype=bool)
    forget[:40] = True
    cfg = training.TrainConfig(epochs=2, lr=1e-2, batch_size=16)
    model = training.build_model(x, 10, 0)
    checkpoints = training.train(model, x, y, cfg, 0)
    return ProviderState(x, y, forget, model, checkpoints, 10, cfg, 0)


@pytest.fixture()
def fit_recorder() -> "FitRecorder":
    return FitRecorder()


@pytest.fixture()
def row_ids():
    return rows_of


class FitRecorder:
    """Stands in for ``fit``: records what the provider trains on."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, x, y, num_classes, cfg, seed):
        self.calls.append((x, y))
        return training.build_model(x, num_classes, seed), []


def rows_of(sub: torch.Tensor, full: torch.Tensor) -> set[int]:
    """Which rows of ``full`` appear in ``sub`` (images are unique random arrays)."""
    keys = {tuple(r.flatten().tolist()): i for i, r in enumerate(full)}
    return {keys[tuple(r.flatten().tolist())] for r in sub}
