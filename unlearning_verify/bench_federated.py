"""Federated variant of the benchmark: the data owner is one client of a FedAvg federation.

Per seed the owner marks a fraction of its client's samples (``fed_task``); the federation trains R
rounds on the harness simulation (history kept). Behaviours: no-op (the final global model,
dishonest), federated retraining without the owner (exact), passive exclusion for several numbers of
further rounds, and FedEraser (Δt = 2, r = 0.5). The owner verifies with
:func:`unlearning_verify.deletion.verify_deletion`: p from the final global model, q from a reference
federation of the other clients trained with another seed (the owner's shadow of "never saw my
data"; without it q is floored at 1/K and 100 queries were needed), membership on its unmarked samples.

Defaults, measured on MNIST (plain FedAvg, E = 2, lr 0.05): LSB was not learned in 8 rounds;
blended was learned to p̂ 0.4–0.9 with the owner holding a third of the data (3 clients, rate 0.5,
10 rounds).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import torch

from fedharness.config import MAX_ROUNDS, ExperimentConfig, FederationConfig, TaskConfig
from fedharness.local_training import LocalConfig
from labcore.errors import InputError
from unlearning_verify import training
from unlearning_verify.bench import subset
from unlearning_verify.deletion import QueryData, VerifyConfig, verify_deletion
from unlearning_verify.fed_task import make_task
from unlearning_verify.federated import Federation
from unlearning_verify.oracles import model_endpoint
from unlearning_verify.providers.federaser import FedEraser
from unlearning_verify.providers.federated_retrain import FederatedRetrain
from unlearning_verify.providers.passive_exclusion import PassiveExclusion
from unlearning_verify.verify import HONORED, NOT_HONORED, check_settings

REFERENCE_SEED_OFFSET = 7


@dataclass
class FederatedBenchConfig:
    family: str = "blended"
    seeds: list[int] = field(default_factory=lambda: list(range(5)))
    owner: int = 0
    rate: float = 0.5
    passive_rounds: list[int] = field(default_factory=lambda: [1, 3, 5])
    alpha: float = VerifyConfig.alpha
    beta: float = VerifyConfig.beta
    max_queries: int = VerifyConfig.max_queries
    num_clients: int = 3
    rounds: int = 10
    local: LocalConfig = field(default_factory=lambda: LocalConfig(epochs=2, lr=0.05, batch_size=32))
    reference: bool = True  # q from a reference federation; False: held-out owners' keys, floor 1/K
    train_samples: int | None = None  # a fixed random subset of the training set (small benches)

    def validate(self) -> None:
        check_settings(self.alpha, self.beta, self.max_queries)
        if not self.seeds or self.num_clients < 2 or self.rounds < 1 or min(self.passive_rounds, default=1) < 1:
            raise InputError("need --seeds ≥ 1, --clients ≥ 2, --rounds ≥ 1 and passive rounds ≥ 1")
        if len(set(self.passive_rounds)) < len(self.passive_rounds):
            raise InputError(f"--passive-rounds lists a number twice ({self.passive_rounds}); give distinct numbers of rounds")
        if self.train_samples is not None and self.train_samples < 1:
            raise InputError(f"--train-samples must be ≥ 1, got {self.train_samples}")
        if not 0.0 < self.rate <= 1.0:
            raise InputError(f"--rate must lie in (0, 1], got {self.rate}")
        if self.rounds + max(self.passive_rounds, default=0) > MAX_ROUNDS:
            raise InputError(f"--rounds plus the largest of --passive-rounds (further rounds without the owner) must be "
                             f"at most {MAX_ROUNDS}; lower them")
        self.experiment(self.seeds[0]).validate()  # the harness's own bounds (rounds, clients, local training)

    def experiment(self, seed: int) -> ExperimentConfig:
        """The harness experiment of one seed (full participation, plain FedAvg: η·m/n = 1)."""
        return ExperimentConfig(
            seed=seed, local=dataclasses.replace(self.local),
            federation=FederationConfig(num_clients=self.num_clients, clients_per_round=self.num_clients,
                                        rounds=self.rounds),
            task=TaskConfig(name="unlearning_watermark",
                            params={"family": self.family, "owner": self.owner, "rate": self.rate}))


def reference_model(cfg: FederatedBenchConfig, seed: int, fed: Federation) -> torch.nn.Module:
    """The owner's reference: the other clients' federation trained from another seed's initial model."""
    ref_cfg = dataclasses.replace(fed.cfg, seed=seed + REFERENCE_SEED_OFFSET)
    ref = dataclasses.replace(Federation.build(ref_cfg, fed.sim.task), clients=fed.clients)  # same shards
    return ref.as_model(ref.train(ref.initial(), cfg.rounds, ref.without(cfg.owner)))


def run_trial(cfg: FederatedBenchConfig, seed: int, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor,
              yt: torch.Tensor, num_classes: int) -> list[dict]:
    """One seed: rows for noop, federated retrain, passive exclusion after each R, and FedEraser."""
    exp = cfg.experiment(seed)
    task = make_task(x, y, xt, yt, exp)
    fed = Federation.build(exp, task)
    final = fed.train(fed.initial(), cfg.rounds, list(range(cfg.num_clients)), record=True)
    before = fed.as_model(final)
    served: dict[str, tuple[torch.Tensor, bool]] = {
        "noop": (final, False), "retrain": (FederatedRetrain().unlearn(fed, final, cfg.owner), True)}
    g, done = final, 0
    for r in sorted(cfg.passive_rounds):
        g, done = PassiveExclusion(rounds=r - done).unlearn(fed, g, cfg.owner), r
        served[f"passive_R{r}"] = (g, True)
    served["federaser"] = (FedEraser().unlearn(fed, final, cfg.owner), True)
    reference = model_endpoint(reference_model(cfg, seed, fed)) if cfg.reference else None
    vcfg = VerifyConfig(cfg.alpha, cfg.beta, cfg.max_queries, seed=seed)
    owner = QueryData(*task.owner_genuine())
    rows = []
    for name, (vec, honest) in served.items():
        model = fed.as_model(vec)
        v = verify_deletion(model_endpoint(before), model_endpoint(model), task.watermark, vcfg,
                            data=QueryData(xt, yt), reference=reference, owner=owner)
        lead = v.markers[0]
        rows.append({
            "setting": "federated", "family": cfg.family, "behaviour": name, "seed": seed, "honest": honest,
            "verdict": v.verdict, "decided_by": v.decided_by, "reason": v.reason, "queries": v.queries,
            "membership_queries": v.membership_queries, "hits": lead.verdict.hits,
            "correct": v.verdict == (HONORED if honest else NOT_HONORED),
            "owner_share": float((task.owner_of == cfg.owner).mean()), "marked": int(task.marked.sum()),
            "clean_accuracy_marked": training.accuracy(before, xt, yt),
            "p_hat": lead.calibration.p_hat, "q_hat": lead.calibration.q_hat, "p_low": lead.calibration.p_low,
            "q_high": lead.calibration.q_high, "basr_after": task.evaluate(model)["attack_success_rate"],
            "clean_accuracy_after": training.accuracy(model, xt, yt),
            "membership_auc": (v.membership or {}).get("auc"),
            "membership_flagged": (v.membership or {}).get("flagged"),
        })
    return rows


def run(cfg: FederatedBenchConfig, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor,
        num_classes: int, done: set[int], record: Callable[[dict], None]) -> None:
    """Every seed not in ``done``; ``record`` receives each row."""
    x, y = subset(x, y, cfg.train_samples)
    for seed in cfg.seeds:
        if seed not in done:
            for row in run_trial(cfg, seed, x, y, xt, yt, num_classes):
                record(row)
