"""Attacks: closed-form model poisoning checked by hand, training attacks by their constraints, ADA."""

from __future__ import annotations

from statistics import NormalDist

import pytest
import torch
import torch.nn.functional as F

from fedharness import attacks
from fedharness.attacks import AttackContext
from fedharness.attacks.dba import LocalTrigger
from fedharness.config import AttackConfig, ExperimentConfig, FederationConfig, TaskConfig
from fedharness.local_training import LocalConfig
from fedharness.simulation import Simulation
from fedharness.tasks.image_classification import ImageClassificationTask


@pytest.fixture(scope="module")
def small_task(data_dir):
    """8×8 digits keep the CNN small (a 3×3 trigger fits)."""
    from fedharness.attacks.pixel_backdoor import PixelPattern
    from poisonlab import data

    ds = data.load("digits")
    x_train, y_train = data.image_tensors(ds["train"])
    x_test, y_test = data.image_tensors(ds["test"])
    return ImageClassificationTask(x_train[:400], y_train[:400], x_test[:300], y_test[:300], trigger=PixelPattern(size=3))


def make_sim(task, name: str, params: dict | None = None, num_attackers: int = 1, **task_kw) -> Simulation:
    cfg = ExperimentConfig(
        task=TaskConfig(**task_kw),
        federation=FederationConfig(num_clients=8, clients_per_round=4, rounds=2, server_lr=4.0),
        local=LocalConfig(epochs=1, lr=0.1, batch_size=25),
        attack=AttackConfig(name=name, num_attackers=num_attackers, rounds=[1], params=params or {}),
    )
    return Simulation(cfg, task)


def context(sim: Simulation) -> AttackContext:
    plan = sim.plan(1)
    g = sim.initial_global()
    seeds = sim.seeds(1, plan)
    benign = sim.engine.train(g, [sim.client_data(c) for c in plan.benign], sim.cfg.local, [seeds[c] for c in plan.benign])
    return sim.attack_context(1, g, plan.malicious, benign)


def synthetic_ctx(benign: torch.Tensor, k: int) -> AttackContext:
    return AttackContext(round=1, global_vec=torch.zeros(benign.shape[1]), attacker_data=[{}] * k,
                         attacker_seeds=list(range(k)), benign_locals=benign, engine=None, task=None,
                         num_clients=10, eta=1.0, local=LocalConfig())


def test_alie_ipm_minmax_by_hand():
    benign = torch.tensor([[1.0, 0.0], [3.0, 2.0], [2.0, 4.0], [2.0, 2.0], [2.0, 2.0], [2.0, 2.0], [2.0, 2.0]])
    mu, sigma = benign.mean(0), benign.std(0, unbiased=False)
    z = NormalDist().inv_cdf((10 - 3) / 10)  # m = 10, k = 3: s = ⌊10/2 + 1⌋ − 3 = 3
    out = attacks.get("alie")(synthetic_ctx(benign, 3))
    assert out.shape == (3, 2) and torch.allclose(out[0], mu - z * sigma, atol=1e-6)
    assert torch.allclose(attacks.get("ipm", eps=0.5)(synthetic_ctx(benign, 1))[0], -0.5 * mu)
    ctx = synthetic_ctx(benign, 1)
    mal = attacks.get("minmax")(ctx)[0]
    gamma, bound = ctx.info["minmax_gamma"], torch.cdist(benign, benign).max()
    assert gamma > 0 and float((mal - benign).norm(dim=1).max()) <= float(bound) + 1e-5
    over = mu - (gamma + 0.01) * sigma
    assert float((over - benign).norm(dim=1).max()) > float(bound)


def test_ada_picks_smallest_attacking_distance_and_hides_in_benign_norms(small_task):
    sim = make_sim(small_task, "ada", {"source": 2, "max_samples": 8})
    ctx = context(sim)
    out = sim.attack(ctx)
    # The attacking distances recomputed one sample at a time with autograd (no vmap).
    model = sim.model
    from fedharness.params import set_vector
    set_vector(model, sim.names, ctx.global_vec)
    x_src = ctx.attacker_data[0]["x"][ctx.attacker_data[0]["y"] == 2][:8]
    naive = {}
    for t in range(10):
        if t == 2:
            continue
        norms = []
        for x in x_src:
            loss = F.binary_cross_entropy(model(x[None]).softmax(1)[0], F.one_hot(torch.tensor(t), 10).float())
            grads = torch.autograd.grad(loss, list(model.parameters()))
            norms.append(torch.stack([g.norm() for g in grads]).mean())
        naive[t] = float(torch.stack(norms).mean())
    assert ctx.info["ada_target"] == min(naive, key=naive.get)
    for t, d in naive.items():
        assert ctx.info["attacking_distances"][str(t)] == pytest.approx(d, rel=1e-4)
    benign_norms = (ctx.benign_locals - ctx.global_vec).norm(dim=1)
    assert float((out[0] - ctx.global_vec).norm()) <= float(benign_norms.median()) + 1e-6


def test_pgd_constrain_scale_and_neurotoxin_constraints(small_task):
    sim = make_sim(small_task, "pgd_backdoor", {"eps": 0.5, "gamma": 2.0, "epochs": 1})
    ctx = context(sim)
    assert float((sim.attack(ctx)[0] - ctx.global_vec).norm()) <= 0.5 + 1e-5

    free = attacks.get("constrain_scale", alpha=1.0, epochs=1, gamma=1.0)(ctx)[0] - ctx.global_vec
    tight = attacks.get("constrain_scale", alpha=0.3, epochs=1, gamma=1.0)(ctx)[0] - ctx.global_vec
    assert float(tight.norm()) < float(free.norm())
    boosted = attacks.get("constrain_scale", alpha=0.3, epochs=1)(ctx)[0] - ctx.global_vec
    assert torch.allclose(boosted, tight * (8 / 4.0), atol=1e-5)  # γ = n/η

    ctx.info.clear()
    honest = sim.engine.train(ctx.global_vec, ctx.attacker_data, ctx.local, ctx.attacker_seeds)[0] - ctx.global_vec
    toxic = attacks.get("neurotoxin", top_ratio=0.2, epochs=1)(ctx)[0] - ctx.global_vec
    top = torch.topk(honest.abs(), int(0.2 * honest.numel())).indices
    assert float(toxic[top].abs().max()) == 0.0 and float(toxic.abs().max()) > 0.0


def test_sign_flip_label_flip_gaussian(small_task):
    sim = make_sim(small_task, "sign_flip")
    ctx = context(sim)
    honest = sim.engine.train(ctx.global_vec, ctx.attacker_data, ctx.local, ctx.attacker_seeds)
    assert torch.allclose(sim.attack(ctx), 2 * ctx.global_vec - honest, atol=1e-6)
    from fedharness.attacks.label_flip import flip_labels
    assert flip_labels(torch.tensor([0, 3, 9]), 10, None, None).tolist() == [9, 6, 0]
    assert flip_labels(torch.tensor([0, 3, 9]), 10, 3, 5).tolist() == [0, 5, 9]
    noise = attacks.get("gaussian", sigma=0.1)(ctx)
    assert abs(float((noise - ctx.global_vec).std()) - 0.1) < 0.005
    assert torch.equal(noise, attacks.get("gaussian", sigma=0.1)(ctx))


def test_dba_pieces_partition_the_global_trigger(small_task):
    images = torch.zeros(1, 1, 8, 8)
    full = small_task.trigger.apply(images)
    pieces = [LocalTrigger(small_task.trigger, j, 2).apply(images) for j in range(2)]
    assert torch.equal(pieces[0] + pieces[1], full)
    assert float((pieces[0] * pieces[1]).abs().sum()) == 0.0 and float(pieces[0].sum()) > 0


def test_semantic_backdoor_uses_unedited_thick_digits(small_task):
    sim = make_sim(small_task, "semantic_backdoor", {"epochs": 1}, backdoor="semantic", semantic_source=7,
                   semantic_quantile=0.75)
    task = sim.task
    train_idx = task.semantic_indices("train")
    assert set(task.y_train[train_idx].tolist()) == {7}
    assert len(train_idx) == pytest.approx(0.25 * int((task.y_train == 7).sum()), abs=1)
    metrics = task.evaluate(sim.model)
    assert {"main_accuracy", "attack_success_rate", "pixel_attack_success_rate"} <= set(metrics)
    ctx = context(sim)
    ctx.colluders = 2
    out = sim.attack(ctx)
    plain = attacks.get("semantic_backdoor", epochs=1, gamma=1.0)(ctx)
    assert torch.allclose(out - ctx.global_vec, (plain - ctx.global_vec) * (8 / 4.0 / 2), atol=1e-5)
