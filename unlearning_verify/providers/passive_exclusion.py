"""F1 (honest, approximate): passive federated unlearning — drop the client, keep training R rounds.

The leaving client's contribution decays with further FedAvg rounds among the others; the verdict
depends on R (a confound for verification, reference §3 F1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearning_verify.federated import Federation


@dataclass
class PassiveExclusion:
    rounds: int = 5
    name: str = "passive_exclusion"
    honest: bool = True

    def unlearn(self, fed: Federation, final: torch.Tensor, leaving: int) -> torch.Tensor:
        """The global model after ``rounds`` more rounds without client ``leaving``."""
        remaining = fed.without(leaving)
        return fed.train(final, self.rounds, remaining, first_round=len(fed.history) + 1)
