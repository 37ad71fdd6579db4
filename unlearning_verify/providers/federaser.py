"""F2 (honest, approximate): FedEraser (Liu et al., IWQoS 2021).

The server kept the clients' updates every Δt rounds. Unlearning rebuilds the global model from the
initial one over the kept rounds t₀ < t₁ < …: at the first, the remaining clients' stored updates are
aggregated as they are; at every later one, the remaining clients run E_cali = r·E_loc local epochs
from the calibrated model, and each new update is rescaled to the stored update's norm,
Ũᵢ = ‖Uᵢ‖·Ûᵢ/‖Ûᵢ‖, then aggregated with the harness server rule. Defaults Δt = 2, r = 0.5.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from labcore.errors import InputError
from unlearning_verify.federated import Federation


@dataclass
class FedEraser:
    interval: int = 2
    calibration_ratio: float = 0.5
    name: str = "federaser"
    honest: bool = True

    def unlearn(self, fed: Federation, final: torch.Tensor, leaving: int) -> torch.Tensor:
        if not fed.history:
            raise InputError("FedEraser needs the recorded training history; train the federation with record=True")
        remaining = fed.without(leaving)
        epochs = max(1, math.ceil(self.calibration_ratio * fed.cfg.local.epochs))
        cali = dataclasses.replace(fed.cfg.local, epochs=epochs)
        kept = list(range(0, len(fed.history), self.interval))
        g = fed.history[0].global_vec.clone()
        for j, t in enumerate(kept):
            stored = fed.history[t].updates[remaining]
            if j == 0:
                updates = stored
            else:
                fresh = fed.local_updates(g, remaining, 10_000 + t, cali)
                scale = stored.norm(dim=1, keepdim=True) / fresh.norm(dim=1, keepdim=True).clamp(min=1e-12)
                updates = fresh * scale
            g = fed.step(g, updates)
        return g
