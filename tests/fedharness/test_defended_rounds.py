"""Defenses inside a simulated round: rejected clients in the record, warm-up, server-side steps."""

from __future__ import annotations

import torch

from fedharness.config import AggregatorConfig, AttackConfig, ExperimentConfig, FederationConfig, StageConfig
from fedharness.local_training import LocalConfig
from fedharness.simulation import Simulation
from fedharness.tasks.image_classification import ImageClassificationTask


def sim_for(mnist, aggregator: AggregatorConfig, attack: AttackConfig) -> Simulation:
    x_train, y_train, x_test, y_test = mnist
    task = ImageClassificationTask(x_train[:300], y_train[:300], x_test[:200], y_test[:200])
    cfg = ExperimentConfig(
        federation=FederationConfig(num_clients=6, clients_per_round=5, rounds=2, server_lr=6 / 5),
        local=LocalConfig(epochs=1, lr=0.1, batch_size=30), aggregator=aggregator, attack=attack,
    )
    return Simulation(cfg, task)


def test_krum_after_warmup_rejects_the_noisy_attacker(mnist):
    sim = sim_for(mnist, AggregatorConfig(name="krum", params={"f": 1}, warmup_rounds=1),
                  AttackConfig(name="gaussian", rounds=[1, 2], params={"sigma": 1.0}))
    records = [r for _, r in sim.rounds(sim.initial_global())]
    assert records[0]["aggregator"] == "mean" and records[0]["rejected_clients"] == []
    second = records[1]
    assert second["aggregator"] == "krum" and 0 in second["malicious"]
    assert 0 in second["rejected_clients"] and len(second["rejected_clients"]) == 4  # Krum keeps one update


def test_validation_and_fltrust_get_server_side_context(mnist):
    attack = AttackConfig(name="sign_flip", rounds=[1], params={"scale": 50.0})
    sim = sim_for(mnist, AggregatorConfig(name="validation", params={"tolerance": 0.0}, server_set_size=60), attack)
    _, record = sim.run_round(1, sim.initial_global())
    stats = record["aggregator_stats"]
    assert len(stats["validation_scores"]) == 5 and 0 in record["rejected_clients"]
    sim = sim_for(mnist, AggregatorConfig(name="fltrust", server_set_size=60), attack)
    _, record = sim.run_round(1, sim.initial_global())
    trust = dict(zip(record["sampled"], record["aggregator_stats"]["trust_scores"]))
    assert trust[0] == 0.0 and min(v for c, v in trust.items() if c != 0) > 0.0


def test_pre_aggregator_from_config_and_nonfinite_attacker(mnist):
    agg = AggregatorConfig(name="median", pre=[StageConfig("norm_clip", {"quantile": 0.5})])
    sim = sim_for(mnist, agg, AttackConfig(name="gaussian", rounds=[1], params={"sigma": float("inf")}))
    g, record = sim.run_round(1, sim.initial_global())
    assert record["rejected_nonfinite"] == 1 and record["rejected_clients"] == [0]
    assert torch.isfinite(g).all() and "clip_bound" in record["aggregator_stats"]
