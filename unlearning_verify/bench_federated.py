"""Federated variant of the benchmark: the data owner is one client of a FedAvg federation.

The owner marks half its client's samples; the federation trains R rounds with the harness (history
kept). Behaviours: no-op (the final global model, dishonest), federated retraining without the owner
(exact), passive exclusion for several numbers of further rounds, and FedEraser (Δt = 2, r = 0.5).
q comes from held-out owners' keys with the 1/K floor (no reference federation is trained), p from
the final global model.

Defaults, measured on MNIST (seed 0, plain FedAvg, E = 2, lr 0.05): the LSB marker was not learned
in 8 rounds (p̂ ≤ 0.05 with 5 clients, owner rate 0.5; p̂ 0.07 at rate 1.0, where the owner's client
labels nearly all its samples with the target and learns a constant instead of the trigger). The
pixel-robust blended marker was learned with the owner holding a third of the data (3 clients:
p̂ 0.34 → 0.68 → 0.89 at rounds 4, 6, 8) but only to 0.34 with 5 clients; hence blended, 3 clients,
rate 0.5, 10 rounds. At 10 rounds p̂ was 0.61 and 0.44 (seeds 0, 1): against q_high = 0.1 (the 1/K
floor) 30 queries at α = β = 10⁻³ gave INCONCLUSIVE for every behaviour, so the budget is 100.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from unlearning_verify import training
from unlearning_verify.federated import FederatedConfig, Federation
from unlearning_verify.keys import OwnerKey
from unlearning_verify.marking import mark, owner_split
from unlearning_verify.providers.federaser import FedEraser
from unlearning_verify.providers.federated_retrain import FederatedRetrain
from unlearning_verify.providers.passive_exclusion import PassiveExclusion
from unlearning_verify.verify import HONORED, NOT_HONORED, calibrate, held_out_owner_hits, hits, query_pool, verify
from unlearning_verify.watermarks import build


@dataclass
class FederatedBenchConfig:
    family: str = "blended"
    seeds: list[int] = field(default_factory=lambda: [0])
    owner: int = 0
    rate: float = 0.5
    passive_rounds: list[int] = field(default_factory=lambda: [1, 3, 5])
    alpha: float = 1e-3
    beta: float = 1e-3
    max_queries: int = 100
    federation: FederatedConfig = field(default_factory=lambda: FederatedConfig(num_clients=3, rounds=10))


def run_trial(cfg: FederatedBenchConfig, seed: int, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor,
              yt: torch.Tensor, num_classes: int) -> list[dict]:
    """One seed: rows for noop, federated retrain, passive exclusion after each R, and FedEraser."""
    key = OwnerKey.generate(cfg.owner, cfg.family, num_classes, seed=seed)
    wm = build(key, tuple(x.shape[1:]))
    client_of = owner_split(len(x), cfg.federation.num_clients, seed)
    marked = mark(x, y, client_of, cfg.owner, wm, cfg.rate, seed)
    fed = Federation.build(marked.x, marked.y, num_classes, cfg.federation, seed, client_of=client_of)
    final = fed.train(fed.initial(), cfg.federation.rounds, list(range(cfg.federation.num_clients)), record=True)
    pool = query_pool(xt, yt, wm.target, None, seed)
    cal, ver = pool[: len(pool) // 2], pool[len(pool) // 2:]
    before = fed.as_model(final)
    before_accuracy = training.accuracy(before, xt, yt)
    oracle = lambda m: (lambda z: training.predict(m, z))
    q_hits, q_trials = held_out_owner_hits(oracle(before), cfg.family, xt[cal], yt[cal], num_classes, seed=seed)
    calibration = calibrate(hits(oracle(before), wm.trigger(xt[cal]), wm.target), len(cal), q_hits, q_trials,
                            num_classes, cfg.alpha, cfg.beta, "held-out owners (floor 1/K)", q_floor=1 / num_classes)
    served: dict[str, tuple[torch.Tensor, bool]] = {"noop": (final, False),
                                                   "retrain": (FederatedRetrain().unlearn(fed, final, cfg.owner), True)}
    g, done = final, 0
    passive = PassiveExclusion()
    for r in sorted(cfg.passive_rounds):
        passive.rounds = r - done
        g, done = passive.unlearn(fed, g, cfg.owner), r
        served[f"passive_R{r}"] = (g, True)
    served["federaser"] = (FedEraser().unlearn(fed, final, cfg.owner), True)
    rows = []
    queries = wm.trigger(xt[ver[torch.as_tensor(np.random.default_rng(seed).permutation(len(ver)))]])
    for name, (vec, honest) in served.items():
        model = fed.as_model(vec)
        v = verify(oracle(model), queries, wm.target, calibration, alpha=cfg.alpha, beta=cfg.beta,
                   max_queries=cfg.max_queries)
        rows.append({
            "setting": "federated", "family": cfg.family, "behaviour": name, "seed": seed, "honest": honest,
            "verdict": v.verdict, "reason": v.reason, "queries": v.queries, "hits": v.hits,
            "correct": v.verdict == (HONORED if honest else NOT_HONORED),
            "owner_share": len(fed.clients[cfg.owner]["y"]) / len(x), "marked": int(marked.marked.sum()),
            "clean_accuracy_marked": before_accuracy,
            "p_hat": calibration.p_hat, "q_hat": calibration.q_hat, "p_low": calibration.p_low,
            "q_high": calibration.q_high, "basr_after": hits(oracle(model), wm.trigger(xt[ver]), wm.target) / len(ver),
            "clean_accuracy_after": training.accuracy(model, xt, yt),
        })
    return rows


def run(cfg: FederatedBenchConfig, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor,
        num_classes: int, done: set[int], record: Callable[[dict], None]) -> None:
    """Every seed not in ``done``; ``record`` receives each row."""
    for seed in cfg.seeds:
        if seed not in done:
            for row in run_trial(cfg, seed, x, y, xt, yt, num_classes):
                record(row)
