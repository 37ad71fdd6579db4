"""F0 (honest, exact): federated retraining from scratch without the leaving client.

The server restarts FedAvg from the recorded initial global model with the remaining clients only, for
as many rounds as the original federation ran (the federated counterpart of H1, the exact baseline
the approximate federated methods are compared with).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from labcore.errors import InputError
from unlearning_verify.federated import Federation


@dataclass
class FederatedRetrain:
    name: str = "retrain"
    honest: bool = True

    def unlearn(self, fed: Federation, final: torch.Tensor, leaving: int) -> torch.Tensor:
        """The global model of a fresh federation of the remaining clients (same initial model, rounds)."""
        if not fed.history:
            raise InputError("federated retraining needs the recorded initial model; train with record=True")
        remaining = fed.without(leaving)
        return fed.train(fed.history[0].global_vec.clone(), len(fed.history), remaining)
