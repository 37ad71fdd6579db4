"""Experiment configuration: small dataclasses, one per concern (mapped from YAML by poisonlab)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from labcore.config import check_seeds, from_dict, load_yaml
from labcore.errors import InputError


MAX_ROUNDS = 100_000
MAX_CLIENTS = 100_000
MAX_LOCAL_EPOCHS = 10_000


@dataclass
class LocalConfig:
    """E local epochs of plain SGD at learning rate ``lr`` on mini-batches of ``batch_size``."""

    epochs: int = 2
    lr: float = 0.05
    batch_size: int = 10


@dataclass
class DataConfig:
    """A dataset name from the registry (mnist, digits, …) and an optional explicit path."""

    name: str = "mnist"
    path: str | None = None


@dataclass
class TaskConfig:
    """Which federated task (``name``, registered in ``poisonlab.fed_run.TASKS``) and its knobs.

    The fields below belong to ``image_classification`` (backdoor target and trigger); every other
    task reads its own knobs from ``params`` into its own config dataclass.

    ``backdoor: semantic`` measures ASR on naturally thick-stroke digits of ``semantic_source``
    (ink mass ≥ the ``semantic_quantile`` of the class) instead of the pixel trigger; use it with the
    ``semantic_backdoor`` attack.
    """

    name: str = "image_classification"
    params: dict[str, Any] = field(default_factory=dict)
    target_label: int = 2
    trigger_size: int = 4
    poison_fraction: float = 0.5
    backdoor: str = "pixel"
    semantic_source: int = 7
    semantic_quantile: float = 0.8


@dataclass
class FederationConfig:
    """n clients, m sampled per round, server rule G ← G + (η/n)·Σ(Lᵢ − G).

    ``server_lr`` (η) defaults to n/m, i.e. plain FedAvg (η·m/n = 1).
    """

    num_clients: int = 100
    clients_per_round: int = 10
    rounds: int = 30
    server_lr: float | None = None
    partition: str = "iid"
    dirichlet_alpha: float = 0.9

    @property
    def eta(self) -> float:
        return self.server_lr if self.server_lr is not None else self.num_clients / self.clients_per_round


@dataclass
class AttackConfig:
    """Which attack, how many colluding attackers, and in which rounds it strikes.

    Rounds are 1-based: an explicit list, and/or every ``every`` rounds from ``start``. In an attack
    round the attackers are put into the sample (Bagdasaryan et al. 2020, §4); otherwise a sampled
    attacker trains honestly.
    """

    name: str = "none"
    num_attackers: int = 1
    rounds: list[int] = field(default_factory=list)
    every: int | None = None
    start: int = 1
    params: dict[str, Any] = field(default_factory=dict)

    def strikes(self, round_index: int) -> bool:
        if self.name == "none":
            return False
        if round_index in self.rounds:
            return True
        return self.every is not None and round_index >= self.start and (round_index - self.start) % self.every == 0


@dataclass
class StageConfig:
    """A pre-aggregator (norm_clip, bucketing, nnm) and its parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class AggregatorConfig:
    """An aggregator from ``fedharness.aggregators``, its parameters and pre-aggregators.

    ``pre`` stages run in order before the aggregator. ``server_set_size`` clean training samples
    are held by the server for rules that need them (FLTrust's root set, validation testing).
    Rounds 1…``warmup_rounds`` aggregate with the plain mean (defense off): defenses are then judged on
    a converged model, as in attack-after-convergence protocols (Bagdasaryan et al. 2020).
    """

    name: str = "mean"
    params: dict[str, Any] = field(default_factory=dict)
    pre: list[StageConfig] = field(default_factory=list)
    server_set_size: int = 100
    warmup_rounds: int = 0


@dataclass
class EngineConfig:
    """``inprocess`` (vmap when ``vectorize`` allows) or ``flower``.

    In-process only: ``device`` runs local training on ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA
    when available); ``vectorize: auto`` trains two or more clients in grouped twins of the model on
    CPU (``group_size`` clients per autograd graph; the loop's numbers bit for bit) and with vmap on
    accelerators, ``grouped`` forces the twins, ``true`` vmap, ``false`` the per-client loop;
    ``workers`` threads train the clients on CPU (null: one per available core; results do not
    depend on it).

    Flower only: ``ray_address`` joins a running Ray cluster (``"auto"`` after ``ray start``; None
    starts a local Ray with ``ray_num_cpus`` CPUs), ``client_num_cpus`` is each ClientApp's CPU share
    (it sets how many run at once).
    """

    name: str = "inprocess"
    vectorize: bool | str = "auto"
    chunk_size: int = 32
    device: str = "cpu"
    workers: int | None = None
    group_size: int = 16
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    client_num_cpus: float = 1.0


@dataclass
class ExperimentConfig:
    """A whole federated experiment."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)

    def validate(self) -> None:
        """Cross-field checks; raises InputError naming the key and the fix.

        ``federation.rounds`` ≤ ``MAX_ROUNDS``, ``federation.num_clients`` ≤ ``MAX_CLIENTS`` and
        ``local.epochs`` ≤ ``MAX_LOCAL_EPOCHS``: larger values are typos (a run that would never finish, or a
        partition of ~one sample per client), rejected before any work starts. The checks run in order and
        lazily, so a later one may rely on an earlier one (η = n/m needs m ≥ 1).
        """
        for checks in (self._federation_checks, self._local_checks, self._attack_checks, self._aggregator_checks,
                       self._engine_checks, self._task_checks):
            for ok, message in checks():
                if not ok:
                    raise InputError(message)

    def _federation_checks(self) -> Iterator[tuple[bool, str]]:
        fed = self.federation
        yield (1 <= fed.num_clients <= MAX_CLIENTS,
               f"federation.num_clients must be between 1 and {MAX_CLIENTS}; lower it")
        yield (fed.rounds <= MAX_ROUNDS,
               f"federation.rounds ({fed.rounds}) must be at most {MAX_ROUNDS}; lower it (or split the run and --resume)")
        yield (1 <= fed.clients_per_round <= fed.num_clients,
               f"federation.clients_per_round (m={fed.clients_per_round}) must be between 1 and "
               f"federation.num_clients (n={fed.num_clients})")
        yield fed.rounds >= 1, "federation.rounds must be >= 1"
        yield positive(fed.eta), f"federation.server_lr ({fed.server_lr}) must be a finite number > 0"
        yield fed.partition in ("iid", "dirichlet"), "federation.partition must be 'iid' or 'dirichlet'"
        yield (positive(fed.dirichlet_alpha),
               f"federation.dirichlet_alpha ({fed.dirichlet_alpha}) must be a finite number > 0; "
               "small values (0.1) skew the labels, large ones (100) approach iid")

    def _local_checks(self) -> Iterator[tuple[bool, str]]:
        local = self.local
        yield local.epochs >= 1 and local.batch_size >= 1, "local.epochs and local.batch_size must be >= 1"
        yield positive(local.lr), f"local.lr ({local.lr}) must be a finite number > 0"
        yield (local.epochs <= MAX_LOCAL_EPOCHS,
               f"local.epochs ({local.epochs}) must be at most {MAX_LOCAL_EPOCHS}; lower it")

    def _attack_checks(self) -> Iterator[tuple[bool, str]]:
        attack, fed = self.attack, self.federation
        yield (0 <= attack.num_attackers <= fed.clients_per_round,
               "attack.num_attackers must be between 0 and federation.clients_per_round")
        yield (attack.name == "none" or attack.num_attackers >= 1,
               f"attack.num_attackers is 0, so attack {attack.name} never runs; set attack.num_attackers >= 1 "
               "or attack.name: none")
        yield (all(1 <= r <= fed.rounds for r in attack.rounds),
               f"attack.rounds must lie in 1..{fed.rounds} (federation.rounds)")
        yield attack.every is None or attack.every >= 1, "attack.every must be >= 1"
        yield (1 <= attack.start <= fed.rounds,
               f"attack.start ({attack.start}) must lie in 1..{fed.rounds} (federation.rounds; rounds count from 1)")

    def _aggregator_checks(self) -> Iterator[tuple[bool, str]]:
        yield self.aggregator.server_set_size >= 1, "aggregator.server_set_size must be >= 1"
        yield 0 <= self.aggregator.warmup_rounds, "aggregator.warmup_rounds must be >= 0"

    def _engine_checks(self) -> Iterator[tuple[bool, str]]:
        engine = self.engine
        yield engine.name in ("inprocess", "flower"), "engine.name must be 'inprocess' or 'flower'"
        yield (engine.vectorize in (True, False, "auto", "grouped"),
               "engine.vectorize must be true, false, 'auto' or 'grouped'")
        yield engine.chunk_size >= 1, "engine.chunk_size must be >= 1 (clients per vmap chunk)"
        yield engine.group_size >= 1, "engine.group_size must be >= 1 (clients per grouped autograd graph)"
        yield (engine.workers is None or engine.workers >= 1,
               "engine.workers must be >= 1, or null for one per available core")

    def _task_checks(self) -> Iterator[tuple[bool, str]]:
        task = self.task
        yield 0 <= task.target_label, "task.target_label must be a class index >= 0"
        yield (task.trigger_size >= 1,
               f"task.trigger_size ({task.trigger_size}) must be >= 1 (the side of the trigger patch in pixels)")
        yield (0 < task.poison_fraction <= 1,
               f"task.poison_fraction ({task.poison_fraction}) must be in (0, 1] (the share of an attacker's "
               "data copied with the trigger)")
        yield task.backdoor in ("pixel", "semantic"), "task.backdoor must be 'pixel' or 'semantic'"
        yield 0 <= task.semantic_source, "task.semantic_source must be a class index >= 0"
        yield 0 < task.semantic_quantile < 1, "task.semantic_quantile must be in (0, 1)"
        yield (task.semantic_source != task.target_label or task.backdoor != "semantic",
               "task.semantic_source must differ from task.target_label")


def positive(value: float) -> bool:
    """``value`` is a finite number > 0 (NaN and ±inf pass no range check and break a run later)."""
    return math.isfinite(value) and value > 0


def finite(value: float | None) -> bool:
    """``value`` is None (a method's "derive it" default) or a finite number."""
    return value is None or math.isfinite(value)


def load_experiment(path: Path, seed: int | None = None) -> ExperimentConfig:
    """Parse and validate an experiment YAML; ``seed`` (when not None) overrides the file's.

    Torch-free, so a bad config is reported before any heavy library loads."""
    cfg = from_dict(ExperimentConfig, load_yaml(path), source=str(path))
    if seed is not None:
        cfg.seed = seed
        check_seeds(cfg, "--seed")
    cfg.validate()
    return cfg
