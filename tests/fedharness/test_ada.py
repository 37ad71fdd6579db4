from __future__ import annotations

import pytest
import torch

from fedharness import attacks
from fedharness.config import AttackConfig, ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig
from fedharness.params import get_vector
from fedharness.simulation import Simulation
from fedharness.tasks.image_classification import ImageClassificationTask
from labcore.errors import InputError


@pytest.fixture(scope="module")
def task(data_dir):
    from poisonlab import data

    ds = data.load("digits")
    x, y = data.image_tensors(ds["train"])
    xt, yt = data.image_tensors(ds["test"])
    return ImageClassificationTask(x[:400], y[:400], xt[:100], yt[:100])


def context(task, params: dict):
    cfg = ExperimentConfig(federation=FederationConfig(num_clients=8, clients_per_round=4, rounds=1, server_lr=2.0),
                           local=LocalConfig(epochs=1, lr=0.1, batch_size=25),
                           attack=AttackConfig(name="ada", rounds=[1], params=params))
    sim = Simulation(cfg, task)
    with torch.no_grad():  # hand-built: the head's bias makes every input look like a 7
        sim.model.head.weight.mul_(0.01)
        sim.model.head.bias.copy_(torch.full((10,), -4.0))
        sim.model.head.bias[7] = 6.0
    g = get_vector(sim.model, sim.names)
    plan = sim.plan(1)
    seeds = sim.seeds(1, plan)
    benign = sim.engine.train(g, [sim.client_data(c) for c in plan.benign], sim.cfg.local, [seeds[c] for c in plan.benign])
    return sim, sim.attack_context(1, g, plan.malicious, benign)


def test_ada_picks_argmin_on_a_hand_built_model(task):
    sim, ctx = context(task, {"source": 2, "max_samples": 8})
    sim.attack(ctx)
    d = ctx.info["attacking_distances"]
    # The model already predicts 7 for everything, so BCE towards onehot(7) has the smallest gradients.
    assert ctx.info["ada_target"] == 7 == int(min(d, key=d.get))
    assert all(d["7"] < v for k, v in d.items() if k != "7")


def test_ada_fixed_target_and_stealth_switch(task):
    sim, ctx = context(task, {"source": 2, "max_samples": 8, "target": 4, "stealth": False})
    out = sim.attack(ctx)
    assert ctx.info["ada_target"] == 4 and ctx.info["ada_scale"] == 1.0
    assert out.shape == (1, ctx.global_vec.numel())
    with pytest.raises(InputError):
        attacks.get("ada", source=2, target=2)
