"""One federated experiment, round by round: sample, train locally, attack, aggregate, evaluate.

All randomness of round r derives from (seed, r): client sampling from ``default_rng([seed, r])``
and each client's batch order from ``SeedSequence([seed, r, client])``. A run resumed from the
checkpoint of round r therefore continues exactly like the uninterrupted run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from fedharness import aggregators, attacks
from fedharness.attacks import AttackContext
from fedharness.config import ExperimentConfig
from fedharness.engines.inprocess import InProcessEngine
from fedharness.params import get_vector, set_vector
from fedharness.partition import split
from fedharness.server import server_step
from fedharness.tasks import Task


def client_seed(seed: int, round_index: int, client: int) -> int:
    return int(np.random.SeedSequence([seed, round_index, client]).generate_state(1)[0])


@dataclass
class RoundPlan:
    """Who takes part in a round and who of them is malicious this round."""

    sampled: list[int]
    malicious: list[int]


class Simulation:
    """Holds the task, partition, engine, aggregator and attack of one experiment."""

    def __init__(self, cfg: ExperimentConfig, task: Task) -> None:
        cfg.validate()
        self.cfg = cfg
        self.task = task
        torch.manual_seed(cfg.seed)
        self.model = task.build_model()
        self.names = task.federated_names(self.model)
        fed = cfg.federation
        self.shards = split(task.partition_labels(), fed.num_clients, fed.partition, fed.dirichlet_alpha, cfg.seed)
        self.engine = InProcessEngine(
            self.model, self.names, task.per_sample_loss, cfg.engine.vectorize, cfg.engine.chunk_size
        )
        self.aggregator = aggregators.get(cfg.aggregator.name, **cfg.aggregator.params)
        self.attack = attacks.get(cfg.attack.name, **cfg.attack.params) if cfg.attack.name != "none" else None
        self.attackers = list(range(cfg.attack.num_attackers)) if self.attack else []

    def initial_global(self) -> torch.Tensor:
        return get_vector(self.model, self.names)

    def plan(self, round_index: int) -> RoundPlan:
        """Sample m of n clients; in an attack round the attackers replace the last benign picks."""
        fed = self.cfg.federation
        rng = np.random.default_rng([self.cfg.seed, round_index])
        sampled = rng.choice(fed.num_clients, fed.clients_per_round, replace=False).tolist()
        if not self.cfg.attack.strikes(round_index):
            return RoundPlan(sampled, [])
        benign = [c for c in sampled if c not in self.attackers]
        sampled = benign[: fed.clients_per_round - len(self.attackers)] + self.attackers
        return RoundPlan(sampled, list(self.attackers))

    def run_round(self, round_index: int, global_vec: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """One round; returns the new global vector and the round's metrics record."""
        start = time.perf_counter()
        fed = self.cfg.federation
        plan = self.plan(round_index)
        benign = [c for c in plan.sampled if c not in plan.malicious]
        seeds = {c: client_seed(self.cfg.seed, round_index, c) for c in plan.sampled}
        locals_benign = self.engine.train(
            global_vec, [self.task.client_data(self.shards[c]) for c in benign], self.cfg.local, [seeds[c] for c in benign]
        )
        rows = dict(zip(benign, locals_benign))
        if plan.malicious:
            ctx = AttackContext(
                round=round_index,
                global_vec=global_vec,
                attacker_data=[self.task.client_data(self.shards[c]) for c in plan.malicious],
                attacker_seeds=[seeds[c] for c in plan.malicious],
                benign_locals=locals_benign,
                engine=self.engine,
                task=self.task,
                num_clients=fed.num_clients,
                eta=fed.eta,
                local=self.cfg.local,
            )
            rows.update(zip(plan.malicious, self.attack(ctx)))
        local_vecs = torch.stack([rows[c] for c in plan.sampled])
        stats: dict = {}
        new_global = server_step(
            global_vec, local_vecs, eta=fed.eta, num_clients=fed.num_clients, aggregator=self.aggregator, stats=stats
        )
        set_vector(self.model, self.names, new_global)
        metrics = self.task.evaluate(self.model)
        norms = (local_vecs - global_vec).norm(dim=1)
        record = {
            "round": round_index,
            **metrics,
            "attacked": bool(plan.malicious),
            "sampled": plan.sampled,
            "malicious": plan.malicious,
            "update_norms": [float(v) for v in norms],
            "rejected_nonfinite": stats.get("rejected_nonfinite", 0),
            "path": "vmap" if self.engine.uses_vmap(len(benign)) else "loop",
            "wall_time_s": time.perf_counter() - start,
        }
        return new_global, record

    def rounds(self, global_vec: torch.Tensor, first_round: int = 1) -> Iterator[tuple[torch.Tensor, dict]]:
        """Rounds ``first_round`` … R, yielding (global vector, record) after each."""
        for r in range(first_round, self.cfg.federation.rounds + 1):
            global_vec, record = self.run_round(r, global_vec)
            yield global_vec, record
