"""Simulated providers answering a deletion request, one behaviour per file (reference §3).

A provider receives the :class:`ProviderState` (training set, the owner's rows, the served model and
its per-epoch checkpoints) and returns the model it serves afterwards. ``honest`` is the ground truth
used to score verdicts: honest providers removed the owner's data (exactly or approximately).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from fedharness.registry import Registry
from labcore.errors import InputError
from unlearning_verify.training import TrainConfig


@dataclass
class ProviderState:
    """What the provider holds when the request to delete the rows ``forget`` arrives.

    ``original_x``/``original_y``/``marked`` are the ground truth of the marking, given only to the
    adaptive dishonest providers that model a provider who found every marker (an upper bound on
    trigger reconstruction or sample detection)."""

    x: torch.Tensor
    y: torch.Tensor
    forget: np.ndarray
    model: nn.Module
    checkpoints: list[dict[str, torch.Tensor]]
    num_classes: int
    train_config: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    original_x: torch.Tensor | None = None
    original_y: torch.Tensor | None = None
    marked: np.ndarray | None = None

    def unmarked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole training set with every marker removed (originals, true labels): what an adaptive
        provider that found and undid the markers holds. Needs ``original_x``/``original_y``."""
        if self.original_x is None or self.original_y is None:
            raise InputError("this behaviour needs the unmarked originals (original_x, original_y) in the state")
        return self.original_x, self.original_y

    def retained(self) -> tuple[torch.Tensor, torch.Tensor]:
        keep = torch.as_tensor(~self.forget)
        return self.x[keep], self.y[keep]


class Provider(Protocol):
    name: str
    honest: bool

    def unlearn(self, state: ProviderState) -> nn.Module:
        """The model served after the deletion request."""


_REGISTRY: Registry[Provider] = Registry("provider behaviour", __name__)
register = _REGISTRY.register
get = _REGISTRY.get
names = _REGISTRY.names
