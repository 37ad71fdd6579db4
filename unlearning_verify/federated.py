"""Federated unlearning on the harness: the data owner is one client of a ``fedharness`` simulation.

:class:`Federation` drives a :class:`fedharness.simulation.Simulation` (its task, partition, engine
and per-round seeds) round by round for the unlearning behaviours, which need what the plain run
loop does not keep: the clients' updates of every round (FedEraser) and rounds over a subset of the
clients (the federation after the owner left). The server rule is the harness's,
G ← G + (η·m/n)·mean(Lᵢ − G) with ``federation.server_lr`` = η (default n/m: plain FedAvg); over all
clients it reproduces ``Simulation.rounds`` exactly (tested).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from fedharness import aggregators
from fedharness.config import ExperimentConfig
from fedharness.local_training import Batch, LocalConfig
from fedharness.params import set_vector
from fedharness.server import server_step
from fedharness.simulation import Simulation, client_seed
from fedharness.tasks import Task
from labcore.errors import InputError


@dataclass
class RoundRecord:
    """What the server kept of a round: the global model it sent and every client's update Lᵢ − G."""

    global_vec: torch.Tensor
    updates: torch.Tensor  # (num_clients, d), row c = client c


@dataclass
class Federation:
    """The simulation, each client's data (materialised once) and the kept history."""

    sim: Simulation
    clients: list[Batch]
    history: list[RoundRecord] = field(default_factory=list)

    @classmethod
    def build(cls, cfg: ExperimentConfig, task: Task) -> "Federation":
        if cfg.aggregator.name != "mean" or cfg.aggregator.pre or cfg.attack.name != "none":
            raise InputError("federated unlearning runs plain FedAvg: use aggregator mean, no pre-stages, no attack")
        sim = Simulation(cfg, task)
        return cls(sim, [sim.client_data(c) for c in range(cfg.federation.num_clients)])

    @property
    def cfg(self) -> ExperimentConfig:
        return self.sim.cfg

    def initial(self) -> torch.Tensor:
        return self.sim.initial_global()

    def without(self, leaving: int) -> list[int]:
        """The client ids that remain once ``leaving`` has left."""
        return [c for c in range(len(self.clients)) if c != leaving]

    def local_updates(self, global_vec: torch.Tensor, clients: list[int], round_index: int,
                      local: LocalConfig | None = None) -> torch.Tensor:
        """(len(clients), d) updates Lᵢ − G of the listed clients trained from ``global_vec``."""
        seeds = [client_seed(self.cfg.seed, round_index, c) for c in clients]
        local_vecs = self.sim.engine.train(global_vec, [self.clients[c] for c in clients], local or self.cfg.local, seeds)
        return local_vecs - global_vec.unsqueeze(0)

    def step(self, global_vec: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        """The harness server rule: G + (η·m/n)·mean(updates), with the configured η, m and n."""
        fed = self.cfg.federation
        return server_step(global_vec, global_vec.unsqueeze(0) + updates,
                           eta=fed.eta * fed.clients_per_round / fed.num_clients, num_clients=len(updates),
                           aggregator=aggregators.get("mean"))

    def participants(self, round_index: int, clients: list[int]) -> list[int]:
        """The simulation's sample of round ``round_index`` restricted to ``clients`` (client-id order)."""
        members = set(clients)
        return sorted(c for c in self.sim.plan(round_index).sampled if c in members)

    def train(self, global_vec: torch.Tensor, rounds: int, clients: list[int], first_round: int = 1,
              record: bool = False) -> torch.Tensor:
        """FedAvg rounds ``first_round`` … over ``clients``; with ``record`` the server keeps every round."""
        if record and self.cfg.federation.clients_per_round != self.cfg.federation.num_clients:
            raise InputError("recording the history (FedEraser) needs full participation: clients_per_round = num_clients")
        for r in range(first_round, first_round + rounds):
            sampled = self.participants(r, clients)
            if not sampled:
                continue
            updates = self.local_updates(global_vec, sampled, r)
            if record:
                self.history.append(RoundRecord(global_vec.clone(), updates.clone()))
            global_vec = self.step(global_vec, updates)
        return global_vec

    def as_model(self, vec: torch.Tensor) -> nn.Module:
        """A standalone copy of the model holding the flat vector ``vec``."""
        model = copy.deepcopy(self.sim.model)
        set_vector(model, self.sim.names, vec)
        return model.eval()

