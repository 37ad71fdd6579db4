"""One federated experiment, round by round: sample, train locally, attack, aggregate, evaluate.

All randomness of round r derives from (seed, r): client sampling from ``default_rng([seed, r])``
and each client's batch order from ``SeedSequence([seed, r, client])``. A run resumed from the
checkpoint of round r therefore continues exactly like the uninterrupted run.

The round is split so that other engines reuse it: :meth:`Simulation.plan` (who takes part),
:meth:`Simulation.local_models` (in-process training and attacks) and :meth:`Simulation.finish_round`
(server rule, evaluation, record). The Flower engine replaces only the middle step.

Two optional task hooks: a task with ``train_clients(global_vec, clients, seeds, local)`` trains its
benign clients itself (recommendation clients train vectorized, by client id); a task with
``row_blocks(model)`` gets its aggregators wrapped in :class:`fedharness.row_sparse.RowSparse`, so
each embedding row is aggregated over the clients that touched it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from fedharness import aggregators, attacks
from fedharness.attacks import AttackContext
from fedharness.config import ExperimentConfig
from fedharness.engines.inprocess import InProcessEngine, resolve_device
from labcore.errors import InputError
from fedharness.local_training import Batch
from fedharness.params import get_vector, set_vector
from fedharness.partition import split
from fedharness.row_sparse import RowSparse
from fedharness.server import server_step
from fedharness.tasks import Task
from fedharness.tasks.image_classification import SemanticFeature

SERVER_SET_SALT = 104_729


def client_seed(seed: int, round_index: int, client: int) -> int:
    return int(np.random.SeedSequence([seed, round_index, client]).generate_state(1)[0])


@dataclass
class RoundPlan:
    """Who takes part in a round and who of them is malicious this round."""

    sampled: list[int]
    malicious: list[int]

    @property
    def benign(self) -> list[int]:
        return [c for c in self.sampled if c not in self.malicious]


def with_backdoor(task: Task, cfg: ExperimentConfig) -> Task:
    """The task measuring the configured backdoor: a copy with a semantic feature for ``semantic``."""
    if cfg.task.backdoor == "pixel":
        return task
    if not hasattr(task, "semantic"):
        raise InputError(f"task.backdoor: semantic needs an image-classification task, not {type(task).__name__}")
    return dataclasses.replace(task, semantic=SemanticFeature(cfg.task.semantic_source, cfg.task.semantic_quantile))


def build_aggregator(cfg: ExperimentConfig) -> aggregators.Aggregator:
    """The configured pre-aggregators composed in front of the configured aggregator."""
    agg = cfg.aggregator
    stages = [aggregators.get(s.name, **s.params) for s in agg.pre]
    return aggregators.compose(*stages, aggregators.get(agg.name, **agg.params))


def build_methods(cfg: ExperimentConfig) -> tuple[aggregators.Aggregator, attacks.Attack | None]:
    """The configured aggregator and attack (None: no attack). Cheap, so callers also use it to refuse an
    unknown name or parameter, an aggregator that cannot take the ``clients_per_round`` updates of a round
    (Krum's f), or an attack that reads the round's benign updates where every sampled client is an attacker,
    before a task loads its data and models."""
    aggregator = build_aggregator(cfg)
    aggregators.check_rows(aggregator, cfg.federation.clients_per_round)
    attack = attacks.get(cfg.attack.name, **cfg.attack.params) if cfg.attack.name != "none" else None
    if attack is not None and attack.knowledge == "benign" and cfg.attack.num_attackers >= cfg.federation.clients_per_round:
        raise InputError(f"attack {cfg.attack.name} reads the round's benign updates, but all m={cfg.federation.clients_per_round} "
                         f"sampled clients are attackers; raise federation.clients_per_round above attack.num_attackers")
    return aggregator, attack


class Simulation:
    """Holds the task, partition, engine, aggregator and attack of one experiment (``methods``: what
    :func:`build_methods` returned for ``cfg``, where the caller built them to check ``cfg`` early)."""

    def __init__(self, cfg: ExperimentConfig, task: Task,
                 methods: tuple[aggregators.Aggregator, attacks.Attack | None] | None = None) -> None:
        cfg.validate()
        aggregator, self.attack = methods or build_methods(cfg)
        self.cfg = cfg
        self.task = with_backdoor(task, cfg)
        fed = cfg.federation
        labels = task.partition_labels()
        if len(labels) < fed.num_clients:
            raise InputError(f"{fed.num_clients} clients need a training example each, but the task has {len(labels)}; "
                             "lower federation.num_clients or give the task more training data")
        torch.manual_seed(cfg.seed)
        self.model = task.build_model()
        self.names = task.federated_names(self.model)
        self.shards = split(labels, fed.num_clients, fed.partition, fed.dirichlet_alpha, cfg.seed)
        self.engine = InProcessEngine(
            self.model, self.names, task.per_sample_loss, cfg.engine.vectorize, cfg.engine.chunk_size,
            resolve_device(cfg.engine.device), cfg.engine.workers, cfg.engine.group_size,
        )
        self.aggregator = aggregator
        self.warmup_aggregator = aggregators.get("mean")
        if hasattr(task, "row_blocks"):
            blocks = task.row_blocks(self.model)
            self.aggregator = RowSparse(self.aggregator, blocks)
            self.warmup_aggregator = RowSparse(self.warmup_aggregator, blocks)
        self.attackers = list(range(cfg.attack.num_attackers)) if self.attack else []
        size = min(cfg.aggregator.server_set_size, len(labels))
        self.server_indices = np.sort(
            np.random.default_rng([cfg.seed, SERVER_SET_SALT]).choice(len(labels), size, replace=False)
        )

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

    def seeds(self, round_index: int, plan: RoundPlan) -> dict[int, int]:
        return {c: client_seed(self.cfg.seed, round_index, c) for c in plan.sampled}

    def client_data(self, client: int) -> Batch:
        return self.task.client_data(self.shards[client])

    def attack_context(
        self, round_index: int, global_vec: torch.Tensor, attackers: list[int], benign_locals: torch.Tensor,
        colluders: int | None = None,
    ) -> AttackContext:
        """What the round exposes to ``attackers`` (all of the round's attackers, or one of them)."""
        fed = self.cfg.federation
        seeds = {c: client_seed(self.cfg.seed, round_index, c) for c in attackers}
        return AttackContext(
            round=round_index,
            global_vec=global_vec,
            attacker_data=[self.client_data(c) for c in attackers],
            attacker_seeds=[seeds[c] for c in attackers],
            benign_locals=benign_locals,
            engine=self.engine,
            task=self.task,
            num_clients=fed.num_clients,
            eta=fed.eta,
            local=self.cfg.local,
            colluders=colluders,
            attacker_ids=list(attackers),
        )

    def local_models(self, round_index: int, global_vec: torch.Tensor, plan: RoundPlan) -> tuple[torch.Tensor, dict]:
        """In-process local training of the round's clients: (local vectors in ``plan.sampled`` order, attack info)."""
        seeds = self.seeds(round_index, plan)
        benign = plan.benign
        if hasattr(self.task, "train_clients"):
            locals_benign = self.task.train_clients(global_vec, benign, [seeds[c] for c in benign], self.cfg.local)
        else:
            locals_benign = self.engine.train(
                global_vec, [self.client_data(c) for c in benign], self.cfg.local, [seeds[c] for c in benign]
            )
        rows = dict(zip(benign, locals_benign))
        info: dict = {}
        if plan.malicious:
            ctx = self.attack_context(round_index, global_vec, plan.malicious, locals_benign)
            rows.update(zip(plan.malicious, self.attack(ctx)))
            info = ctx.info
        return torch.stack([rows[c] for c in plan.sampled]), info

    def server_context(self, round_index: int, global_vec: torch.Tensor, plan: RoundPlan) -> dict:
        """Context for the aggregator; the server-set steps run only for rules that need them."""
        context: dict = {"client_ids": plan.sampled, "seed": self.cfg.seed, "round_index": round_index}
        wanted = aggregators.needs(self.round_aggregator(round_index))
        if wanted & {"root_update", "validate"}:
            server_data = self.task.client_data(self.server_indices)
        if "root_update" in wanted:
            seed = client_seed(self.cfg.seed, round_index, self.cfg.federation.num_clients)
            context["root_update"] = self.engine.train(global_vec, [server_data], self.cfg.local, [seed])[0] - global_vec
        if "validate" in wanted:
            context["validate"] = self.validator(global_vec, server_data)
        return context

    def validator(self, global_vec: torch.Tensor, data: Batch) -> Callable[[torch.Tensor], torch.Tensor]:
        """scores(rows) = validation score of G + row on the server set (accuracy, or −loss)."""

        def score(rows: torch.Tensor) -> torch.Tensor:
            out = []
            for row in rows:
                set_vector(self.model, self.names, global_vec + row)
                if hasattr(self.task, "accuracy"):
                    out.append(self.task.accuracy(self.model, data))
                else:
                    state = {**dict(self.model.named_parameters()), **dict(self.model.named_buffers())}
                    with torch.no_grad():
                        out.append(-float(self.task.per_sample_loss(self.model, state, data).mean()))
            set_vector(self.model, self.names, global_vec)
            return torch.tensor(out)

        return score

    def round_aggregator(self, round_index: int) -> aggregators.Aggregator:
        """The configured rule, or the plain mean during the warm-up rounds."""
        return self.warmup_aggregator if round_index <= self.cfg.aggregator.warmup_rounds else self.aggregator

    def finish_round(
        self, round_index: int, global_vec: torch.Tensor, plan: RoundPlan, local_vecs: torch.Tensor,
        start: float, path: str, attack_info: dict | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """Server rule, evaluation and the round record, given the clients' local vectors."""
        fed = self.cfg.federation
        stats: dict = {}
        new_global = server_step(
            global_vec, local_vecs, eta=fed.eta, num_clients=fed.num_clients,
            aggregator=self.round_aggregator(round_index),
            stats=stats, **self.server_context(round_index, global_vec, plan),
        )
        set_vector(self.model, self.names, new_global)
        metrics = self.task.evaluate(self.model)
        norms = (local_vecs - global_vec).norm(dim=1)
        rejected = set(stats.pop("nonfinite_rows", []))
        accepted = stats.pop("accepted_rows", None)
        if accepted is not None:
            rejected |= set(range(len(plan.sampled))) - set(accepted)
        record = {
            "round": round_index,
            **metrics,
            "attacked": bool(plan.malicious),
            "sampled": plan.sampled,
            "malicious": plan.malicious,
            "update_norms": [float(v) for v in norms],
            "rejected_nonfinite": stats.pop("rejected_nonfinite", 0),
            "rejected_clients": [plan.sampled[i] for i in sorted(rejected)],
            "aggregator": "mean" if round_index <= self.cfg.aggregator.warmup_rounds else self.cfg.aggregator.name,
            "aggregator_stats": stats,
            "attack_info": attack_info or {},
            "path": path,
            "workers": self.engine.workers,
            "wall_time_s": time.perf_counter() - start,
        }
        return new_global, record

    def run_round(self, round_index: int, global_vec: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """One round; returns the new global vector and the round's metrics record."""
        start = time.perf_counter()
        plan = self.plan(round_index)
        local_vecs, info = self.local_models(round_index, global_vec, plan)
        return self.finish_round(round_index, global_vec, plan, local_vecs, start, self.clients_path, info)

    @property
    def clients_path(self) -> str | None:
        """How the latest round's benign clients trained: ``task`` (the task trains them) or the engine's path."""
        return "task" if hasattr(self.task, "train_clients") else self.engine.last_path

    def rounds(self, global_vec: torch.Tensor, first_round: int = 1) -> Iterator[tuple[torch.Tensor, dict]]:
        """Rounds ``first_round`` … R, yielding (global vector, record) after each."""
        for r in range(first_round, self.cfg.federation.rounds + 1):
            global_vec, record = self.run_round(r, global_vec)
            yield global_vec, record
