"""The Flower backend gives the in-process engine's results on a deterministic configuration."""

from __future__ import annotations

import pytest
import torch

from fedharness.config import AggregatorConfig, AttackConfig, EngineConfig, ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig
from fedharness.simulation import Simulation
from fedharness.tasks.image_classification import ImageClassificationTask

pytest.importorskip("flwr")
pytest.importorskip("ray")


@pytest.mark.flower
def test_flower_simulation_matches_inprocess(mnist):
    """3 clients, 2 rounds, an attacker in round 2 and FLTrust (a server-side root-set step).

    Tolerance: both engines run the same per-client arithmetic, but in different processes and in
    a different client order, so the global vectors agree to float32 rounding (max |Δ| ≤ 1e-4); MTA/ASR
    to 1e-6.
    """
    x_train, y_train, x_test, y_test = mnist
    task = ImageClassificationTask(x_train[:300], y_train[:300], x_test[:400], y_test[:400])
    cfg = ExperimentConfig(
        federation=FederationConfig(num_clients=3, clients_per_round=3, rounds=2, server_lr=3.0),
        local=LocalConfig(epochs=1, lr=0.1, batch_size=20),
        aggregator=AggregatorConfig(name="fltrust", server_set_size=50),
        attack=AttackConfig(name="model_replacement", rounds=[2], params={"epochs": 1, "lr": 0.05}),
        engine=EngineConfig(name="flower", ray_num_cpus=2),
    )
    sim = Simulation(cfg, task)
    expected = list(sim.rounds(sim.initial_global()))

    from fedharness.engines.flower import rounds

    flower_sim = Simulation(cfg, task)
    got = list(rounds(flower_sim, flower_sim.initial_global(), 1))

    assert [r["round"] for _, r in got] == [1, 2]
    for (g_ref, r_ref), (g, r) in zip(expected, got):
        assert float((g_ref - g).abs().max()) <= 1e-4
        assert r["path"] == "flower"
        assert r["sampled"] == r_ref["sampled"] and r["malicious"] == r_ref["malicious"]
        for key in ("main_accuracy", "attack_success_rate"):
            assert r[key] == pytest.approx(r_ref[key], abs=1e-6)
        assert r["aggregator_stats"]["trust_scores"] == pytest.approx(r_ref["aggregator_stats"]["trust_scores"], abs=1e-4)
        assert r["update_norms"] == pytest.approx(r_ref["update_norms"], abs=1e-4)
    assert got[1][1]["attacked"] and got[1][1]["malicious"] == [0]
    assert not torch.equal(got[0][0], got[1][0])
