"""The grouped client path (K clients' SmallCNNs as one model) against the per-client loop."""

import numpy as np
import pytest
import torch
from torch import nn

from fedharness.config import EngineConfig, ExperimentConfig, FederationConfig
from fedharness.engines.grouped import MaxPool2x2, grouped_twin
from fedharness.engines.inprocess import InProcessEngine
from fedharness.local_training import LocalConfig
from fedharness.params import get_vector
from fedharness.simulation import Simulation
from labcore.errors import InputError

TOLERANCE = 1e-4  # ‖grouped − loop‖ / ‖loop − start‖ per client: float32 sums in another order


def _engine(task, model, names, **kw) -> InProcessEngine:
    return InProcessEngine(model, names, task.per_sample_loss, **kw)


def test_grouped_clients_give_the_loops_local_models(small_task):
    """Unequal clients (one empty, one with a short last batch) in groups of 3: same local models."""
    task, model, names, g = small_task
    shards = [np.arange(0, 23), np.arange(23, 40), np.arange(40, 40), np.arange(40, 75), np.arange(75, 95)]
    data = [task.client_data(s) for s in shards]
    cfg = LocalConfig(epochs=2, lr=0.1, batch_size=8)
    seeds = [11, 12, 13, 14, 15]
    engine = _engine(task, model, names, vectorize="grouped", group_size=3)
    grouped = engine.train(g, data, cfg, seeds)
    assert engine.client_path(5) == "grouped" and engine._twins
    looped = _engine(task, model, names, vectorize=False).train(g, data, cfg, seeds)
    assert torch.equal(grouped[2], g) and torch.equal(looped[2], g)  # no data, no step
    for i in (0, 1, 3, 4):
        assert (grouped[i] - looped[i]).norm() < TOLERANCE * (looped[i] - g).norm()
        assert (looped[i] - g).norm() > 0.01


def test_grouped_local_models_do_not_depend_on_the_number_of_workers(small_task):
    task, model, names, g = small_task
    data = [task.client_data(np.arange(i * 30, i * 30 + 20 + 3 * i)) for i in range(5)]
    cfg = LocalConfig(epochs=1, lr=0.05, batch_size=8)
    one, two = (_engine(task, model, names, vectorize="grouped", group_size=2, workers=w).train(g, data, cfg, [1, 2, 3, 4, 5])
                for w in (1, 2))
    assert torch.equal(one, two)


def test_grouped_is_opt_in_and_one_client_keeps_the_loop(small_task):
    """'auto' keeps the bit-exact loop on CPU (Flower's arithmetic); 'grouped' groups two or more clients."""
    task, model, names, _ = small_task
    assert _engine(task, model, names).client_path(4) == "loop"
    grouped = _engine(task, model, names, vectorize="grouped")
    assert grouped.client_path(4) == "grouped" and grouped.client_path(1) == "loop"
    assert _engine(task, model, names, device="cuda").client_path(4) == "vmap"


def test_models_without_a_twin_fall_back_to_the_loop(small_task):
    """BatchNorm mixes a batch's samples: no twin, the loop trains (and the round records it)."""
    assert grouped_twin(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))) is None

    class Mixing(nn.Module):  # a forward that mixes samples: the first-use check must catch it
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(784, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc(x.flatten(1))
            return h - h.mean(0)

    task = small_task[0]
    model = Mixing()
    names = task.federated_names(model)
    engine = _engine(task, model, names, vectorize="grouped")
    data = [task.client_data(np.arange(i * 10, i * 10 + 10)) for i in range(2)]
    out = engine.train(get_vector(model, names), data, LocalConfig(epochs=1, lr=0.1, batch_size=5), [1, 2])
    assert engine.client_path(2) == "loop" and out.shape == (2, get_vector(model, names).numel())


def test_a_grouped_round_matches_a_loop_round(small_task):
    """Same global model (1e-5 relative) and the same MTA/ASR; the path is recorded."""
    task = small_task[0]
    out = {}
    for vectorize in ("grouped", False):
        cfg = ExperimentConfig(seed=3, federation=FederationConfig(num_clients=8, clients_per_round=6, rounds=1),
                               local=LocalConfig(epochs=1, lr=0.05, batch_size=10),
                               engine=EngineConfig(vectorize=vectorize, workers=2, group_size=4))
        sim = Simulation(cfg, task)
        start = sim.initial_global()
        out[vectorize] = (*sim.run_round(1, start), start)
    (g1, r1, start), (g2, r2, _) = out["grouped"], out[False]
    assert r1["path"] == "grouped" and r2["path"] == "loop"
    assert (g1 - g2).norm() <= 1e-5 * g2.norm() and (g2 - start).norm() > 1e-3
    assert (r1["main_accuracy"], r1["attack_success_rate"]) == (r2["main_accuracy"], r2["attack_success_rate"])


@pytest.mark.parametrize("field, value, message", [("vectorize", "groups", "engine.vectorize must be"),
                                                   ("group_size", 0, "engine.group_size must be >= 1")])
def test_engine_fields_are_validated(field, value, message):
    cfg = ExperimentConfig()
    setattr(cfg.engine, field, value)
    with pytest.raises(InputError, match=message):
        cfg.validate()


def test_a_group_of_one_is_the_loop_bit_for_bit(small_task):
    """With K = 1 the twin runs the model's own kernels (max-pooling channels-last picks the same elements)."""
    task, model, names, g = small_task
    data = [task.client_data(np.arange(0, 37)), task.client_data(np.arange(37, 60))]
    cfg = LocalConfig(epochs=2, lr=0.1, batch_size=8)
    one = _engine(task, model, names, vectorize="grouped", group_size=1).train(g, data, cfg, [5, 6])
    looped = _engine(task, model, names, vectorize=False).train(g, data, cfg, [5, 6])
    assert torch.equal(one, looped)


def test_evaluation_pools_channels_last_with_the_same_predictions(small_task):
    """SmallCNN's pooling takes the channels-last kernel when no gradient is recorded: same predictions,
    also when two threads share the batches."""
    task, model, names, g = small_task
    with torch.enable_grad():
        reference = model(task.x_test).argmax(1)
    task.eval_batch = 30
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        threaded = task.predict(model, task.x_test)
    finally:
        torch.set_num_threads(saved)
    assert torch.equal(threaded, reference)
    assert torch.equal(task.predict(model, task.x_test), reference)


def test_strided_max_pooling_is_max_pool2d_bit_for_bit():
    """Values and gradients, with ties (constant rows, as MNIST's background gives after GroupNorm)."""
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, 6)
    x[:, :, :4] = 0.25
    x[0, 0, 4:6, 0:2] = 1.0  # a window of four equal maxima
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    grad = torch.randn(3, 5, 4, 3)
    ours = MaxPool2x2.apply(a)
    theirs = torch.nn.functional.max_pool2d(b, 2)
    assert torch.equal(ours, theirs)
    assert torch.equal(torch.autograd.grad(ours, a, grad)[0], torch.autograd.grad(theirs, b, grad)[0])
