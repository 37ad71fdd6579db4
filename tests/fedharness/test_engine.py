import numpy as np
import pytest
import torch

from fedharness.engines.inprocess import InProcessEngine, resolve_device
from labcore.cores import available_cores
from labcore.errors import InputError
from fedharness.config import EngineConfig, ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig
from fedharness.simulation import Simulation

TOLERANCE = 1e-3  # ‖vmap − loop‖ / ‖loop − start‖ per client: float32 reductions differ in order only,
# and SGD amplifies that differently on other CPU kernels (1e-6 here, 5e-4 with ATEN_CPU_CAPABILITY=default)


def test_vectorized_and_loop_clients_give_the_same_local_models(small_task):
    task, model, names, g = small_task
    # Ragged clients, one with no data at all: padding and masking must not change the arithmetic.
    shards = [np.arange(0, 23), np.arange(23, 40), np.arange(40, 40), np.arange(40, 75)]
    data = [task.client_data(s) for s in shards]
    cfg = LocalConfig(epochs=2, lr=0.05, batch_size=8)
    seeds = [11, 12, 13, 14]
    vmapped = InProcessEngine(model, names, task.per_sample_loss, vectorize=True, chunk_size=3).train(g, data, cfg, seeds)
    looped = InProcessEngine(model, names, task.per_sample_loss, vectorize=False).train(g, data, cfg, seeds)
    assert vmapped.shape == (4, g.numel())
    assert torch.equal(looped[2], g) and torch.equal(vmapped[2], g)  # no data, no step
    for i in (0, 1, 3):
        assert (vmapped[i] - looped[i]).norm() < TOLERANCE * (looped[i] - g).norm()
    assert (looped[0] - g).norm() > 0.01  # training moved the others


def test_local_training_is_reproducible_and_seed_dependent(small_task):
    task, model, names, g = small_task
    engine = InProcessEngine(model, names, task.per_sample_loss, vectorize=False)
    data = [task.client_data(np.arange(30))]
    cfg = LocalConfig(epochs=1, lr=0.05, batch_size=8)
    a, b, c = (engine.train(g, data, cfg, [s]) for s in (1, 1, 2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_auto_vectorizes_on_accelerators_only(small_task):
    """'auto' never takes vmap on CPU (measured slower there; the grouped path runs instead) and batches
    clients with vmap on accelerators."""
    task, model, names, _ = small_task
    cpu = InProcessEngine(model, names, task.per_sample_loss)
    cuda = InProcessEngine(model, names, task.per_sample_loss, device="cuda")
    assert not cpu.uses_vmap(10) and cuda.uses_vmap(10) and not cuda.uses_vmap(1)
    assert InProcessEngine(model, names, task.per_sample_loss, vectorize=True).uses_vmap(2)


def test_engine_device_names_are_checked():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="not a torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device; use cpu or auto"):
            resolve_device("cuda")


def test_local_models_do_not_depend_on_the_number_of_workers(small_task):
    """Clients (loop) and fixed chunks (vmap) land on worker threads in any order: same local models."""
    task, model, names, g = small_task
    data = [task.client_data(np.arange(i * 30, i * 30 + 20 + 3 * i)) for i in range(5)]
    cfg = LocalConfig(epochs=1, lr=0.05, batch_size=8)
    seeds = [21, 22, 23, 24, 25]
    for vectorize in (False, True):
        one, two = (InProcessEngine(model, names, task.per_sample_loss, vectorize=vectorize, chunk_size=2, workers=w)
                    .train(g, data, cfg, seeds) for w in (1, 2))
        assert (one - two).norm() <= 1e-6 * (one - g).norm()
        assert (one - g).norm(dim=1).min() > 0.01


def test_engine_workers_default_to_the_available_cores_and_are_checked(small_task):
    task, model, names, _ = small_task
    assert InProcessEngine(model, names, task.per_sample_loss, workers=None).workers == available_cores()
    with pytest.raises(InputError, match="engine.workers must be >= 1"):
        InProcessEngine(model, names, task.per_sample_loss, workers=0)


def test_a_round_gives_the_same_global_model_with_one_or_two_workers(small_task):
    """engine.workers spreads a round's clients over threads; the global model must not change."""
    task = small_task[0]
    results = []
    for workers in (1, 2):
        cfg = ExperimentConfig(seed=3, federation=FederationConfig(num_clients=8, clients_per_round=4, rounds=1),
                               local=LocalConfig(epochs=1, lr=0.1, batch_size=10), engine=EngineConfig(workers=workers))
        sim = Simulation(cfg, task)
        start = sim.initial_global()
        g, record = sim.run_round(1, start)
        assert record["workers"] == workers
        results.append((g, record))
    (g1, r1), (g2, r2) = results
    assert (g1 - g2).norm() <= 1e-6 * (g1 - start).norm()
    assert r1["main_accuracy"] == r2["main_accuracy"]
    assert r1["update_norms"] == pytest.approx(r2["update_norms"], rel=1e-6)


def test_a_round_of_attackers_only_trains_no_benign_client_and_omniscient_attacks_need_one(small_task):
    from fedharness.config import AttackConfig

    task, model, names, _ = small_task
    engine = InProcessEngine(model, names, task.per_sample_loss, workers=1)
    start = torch.cat([p.detach().flatten() for n, p in model.named_parameters() if n in names])
    assert engine.train(start, [], LocalConfig(), []).shape == (0, start.numel())

    def config(attack: str) -> ExperimentConfig:
        return ExperimentConfig(seed=0, federation=FederationConfig(num_clients=4, clients_per_round=1, rounds=1),
                                local=LocalConfig(epochs=1, batch_size=10), attack=AttackConfig(name=attack, num_attackers=1, rounds=[1]))

    sim = Simulation(config("sign_flip"), task)
    g, record = sim.run_round(1, sim.initial_global())
    assert record["malicious"] == [0] and torch.isfinite(g).all()
    with pytest.raises(InputError, match="attack alie reads the round's benign updates"):
        Simulation(config("alie"), task)
