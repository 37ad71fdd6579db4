"""Tasks: what is being learned (model, per-sample loss, client data, evaluation)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn

from fedharness.local_training import Batch


class Task(Protocol):
    """The harness's view of a learning problem; attacks reach it through ``poisoned_data``."""

    def build_model(self) -> nn.Module: ...

    def federated_names(self, model: nn.Module) -> list[str]:
        """Parameters that clients train and send (whole model, or adapters only)."""
        ...

    def per_sample_loss(self, model: nn.Module, state: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor: ...

    def partition_labels(self) -> np.ndarray: ...

    def client_data(self, indices: np.ndarray) -> Batch: ...

    def poisoned_data(self, data: Batch, seed: int) -> Batch:
        """The attacker's training set built from its own data."""
        ...

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """At least ``main_accuracy`` and ``attack_success_rate`` (fractions in [0, 1])."""
        ...
