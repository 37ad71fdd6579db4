"""Federated scenario: the data owner is one client of a FedAvg federation built on the harness.

Each round every client trains locally from the global model (``InProcessEngine``, functional SGD)
and the server applies G ← G + (η·m/n)·mean(Lᵢ − G) (``fedharness.server.server_step`` with the
``mean`` aggregator, full participation, η = 1). The server keeps every round's global model and
client updates, which FedEraser needs. Clients are an IID split (``fedharness.partition.iid``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from fedharness import aggregators
from fedharness.engines.inprocess import InProcessEngine
from fedharness.local_training import Batch, LocalConfig
from fedharness.params import get_vector, set_vector, trainable_names
from fedharness.partition import iid
from fedharness.server import server_step
from unlearning_verify.training import build_model


def cross_entropy(model: nn.Module, state: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
    return F.cross_entropy(functional_call(model, state, (batch["x"],)), batch["y"], reduction="none")


@dataclass
class FederatedConfig:
    num_clients: int = 10
    rounds: int = 10
    local: LocalConfig = field(default_factory=lambda: LocalConfig(epochs=2, lr=0.05, batch_size=32))
    server_lr: float = 1.0


@dataclass
class RoundRecord:
    """What the server kept of round r: the global model it sent and the clients' updates."""

    global_vec: torch.Tensor
    updates: torch.Tensor  # (num_clients, d), Lᵢ − G


@dataclass
class Federation:
    """Clients' data, the model skeleton, the engine and the training history."""

    model: nn.Module
    names: list[str]
    engine: InProcessEngine
    clients: list[Batch]
    cfg: FederatedConfig
    seed: int
    history: list[RoundRecord] = field(default_factory=list)

    @classmethod
    def build(cls, x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: FederatedConfig, seed: int,
              client_of: np.ndarray | None = None) -> "Federation":
        model = build_model(x, num_classes, seed)
        names = trainable_names(model)
        parts = ([np.flatnonzero(client_of == c) for c in range(cfg.num_clients)] if client_of is not None
                 else iid(len(x), cfg.num_clients, seed))
        clients = [{"x": x[torch.as_tensor(p)], "y": y[torch.as_tensor(p)]} for p in parts]
        return cls(model, names, InProcessEngine(model, names, cross_entropy), clients, cfg, seed)

    def initial(self) -> torch.Tensor:
        return get_vector(self.model, self.names)

    def without(self, leaving: int) -> list[int]:
        """The client ids that remain once ``leaving`` has left."""
        return [c for c in range(len(self.clients)) if c != leaving]

    def local_updates(self, global_vec: torch.Tensor, clients: list[int], round_index: int,
                      local: LocalConfig | None = None) -> torch.Tensor:
        """(len(clients), d) updates Lᵢ − G of the listed clients trained from ``global_vec``."""
        seeds = [int(np.random.SeedSequence([self.seed, round_index, c]).generate_state(1)[0]) for c in clients]
        local_vecs = self.engine.train(global_vec, [self.clients[c] for c in clients], local or self.cfg.local, seeds)
        return local_vecs - global_vec.unsqueeze(0)

    def step(self, global_vec: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        """The harness server rule over the submitted updates (full participation of them)."""
        return server_step(global_vec, global_vec.unsqueeze(0) + updates, eta=self.cfg.server_lr,
                           num_clients=len(updates), aggregator=aggregators.get("mean"))

    def train(self, global_vec: torch.Tensor, rounds: int, clients: list[int], first_round: int = 0,
              record: bool = False) -> torch.Tensor:
        """FedAvg rounds over ``clients``; with ``record`` the server keeps every round."""
        for r in range(first_round, first_round + rounds):
            updates = self.local_updates(global_vec, clients, r)
            if record:
                self.history.append(RoundRecord(global_vec.clone(), updates.clone()))
            global_vec = self.step(global_vec, updates)
        return global_vec

    def as_model(self, vec: torch.Tensor) -> nn.Module:
        """A standalone copy of the model holding the flat vector ``vec``."""
        import copy

        model = copy.deepcopy(self.model)
        set_vector(model, self.names, vec)
        return model.eval()
