"""The grouped client path (K clients' SmallCNNs as one model) against the per-client loop."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from fedharness.config import EngineConfig, ExperimentConfig, FederationConfig
from fedharness.engines.grouped import GroupedLinear, grouped_twin
from fedharness.engines.inprocess import InProcessEngine
from fedharness.local_training import LocalConfig
from fedharness.params import get_vector
from fedharness.simulation import Simulation
from labcore.errors import InputError

def _engine(task, model, names, **kw) -> InProcessEngine:
    return InProcessEngine(model, names, task.per_sample_loss, **kw)


def test_grouped_clients_give_the_loops_local_models_bit_for_bit(small_task):
    """Unequal clients (one empty, short last batches of 7, 1, 3 and 4 samples) in groups of 3."""
    task, model, names, g = small_task
    shards = [np.arange(0, 23), np.arange(23, 40), np.arange(40, 40), np.arange(40, 75), np.arange(75, 95)]
    data = [task.client_data(s) for s in shards]
    cfg = LocalConfig(epochs=2, lr=0.1, batch_size=8)
    seeds = [11, 12, 13, 14, 15]
    engine = _engine(task, model, names, vectorize="grouped", group_size=3)
    grouped = engine.train(g, data, cfg, seeds)
    assert engine.last_path == "grouped"
    looped = _engine(task, model, names, vectorize=False).train(g, data, cfg, seeds)
    assert torch.equal(grouped[2], g) and torch.equal(looped[2], g)  # no data, no step
    assert torch.equal(grouped, looped)
    assert all((looped[i] - g).norm() > 0.01 for i in (0, 1, 3, 4))


def test_grouped_local_models_do_not_depend_on_the_number_of_workers(small_task):
    task, model, names, g = small_task
    data = [task.client_data(np.arange(i * 30, i * 30 + 20 + 3 * i)) for i in range(5)]
    cfg = LocalConfig(epochs=1, lr=0.05, batch_size=8)
    one, two = (_engine(task, model, names, vectorize="grouped", group_size=2, workers=w).train(g, data, cfg, [1, 2, 3, 4, 5])
                for w in (1, 2))
    assert torch.equal(one, two)


def test_auto_groups_clients_on_cpu_and_one_client_keeps_the_loop(small_task):
    """'auto' trains two or more clients grouped on CPU (the loop's numbers, faster) and with vmap on
    accelerators; the loop stays available by name."""
    task, model, names, _ = small_task
    auto = _engine(task, model, names)
    assert auto.client_path(4) == "grouped" and auto.client_path(1) == "loop"
    assert _engine(task, model, names, vectorize=False).client_path(4) == "loop"
    assert _engine(task, model, names, device="cuda").client_path(4) == "vmap"


def test_models_without_a_twin_fall_back_to_the_loop(small_task):
    """BatchNorm mixes a batch's samples: no twin, the loop trains (and the round records it)."""
    assert grouped_twin(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))) is None
    assert grouped_twin(nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4, affine=False))) is None
    assert grouped_twin(nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4))) is not None

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
    assert engine.last_path == "loop" and out.shape == (2, get_vector(model, names).numel())


def test_grouped_rounds_equal_loop_rounds(small_task):
    """Three rounds: the same global models bit for bit, so the same MTA/ASR; the path is recorded."""
    task = small_task[0]
    out = {}
    for vectorize in ("grouped", False):
        cfg = ExperimentConfig(seed=3, federation=FederationConfig(num_clients=8, clients_per_round=6, rounds=3),
                               local=LocalConfig(epochs=1, lr=0.05, batch_size=10),
                               engine=EngineConfig(vectorize=vectorize, workers=2, group_size=4))
        sim = Simulation(cfg, task)
        start = sim.initial_global()
        out[vectorize] = (list(sim.rounds(start)), start)
    (grouped, start), (looped, _) = out["grouped"], out[False]
    assert [r["path"] for _, r in grouped] == ["grouped"] * 3 and [r["path"] for _, r in looped] == ["loop"] * 3
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(grouped, looped))
    assert (looped[-1][0] - start).norm() > 1e-3
    metrics = [[(r["main_accuracy"], r["attack_success_rate"]) for _, r in rounds] for rounds in (grouped, looped)]
    assert metrics[0] == metrics[1]


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


def test_a_batched_form_that_sums_in_another_order_is_replaced_by_per_client_calls():
    """A twin layer keeps its batched kernel only where it equals the per-client call bit for bit: one
    that rounds differently (here: float64 arithmetic) gives way to F.linear per client."""

    class RoundsDifferently(GroupedLinear):
        def batched(self, x, weight, bias):
            return super().batched(x.double(), weight.double(), bias.double()).float()

    torch.manual_seed(0)
    k, b = 3, 4
    weight, bias, x = torch.randn(k, 7, 50), torch.randn(k, 7), torch.randn(b * k, 50)
    layer = RoundsDifferently(nn.Linear(50, 7))
    assert not torch.equal(layer.batched(x, weight, bias), GroupedLinear.batched(layer, x, weight, bias))
    out = functional_call(layer, {"weight": weight, "bias": bias}, (x,))
    rows = x.reshape(b, k, 50)
    # the loop's call: each client's own contiguous batch (F.linear on a strided view sums differently)
    reference = torch.stack([F.linear(rows[:, i].contiguous(), weight[i], bias[i]) for i in range(k)], 1)
    reference = reference.reshape(b * k, 7)
    assert torch.equal(out, reference)
    exact = functional_call(GroupedLinear(nn.Linear(50, 7)), {"weight": weight, "bias": bias}, (x,))
    assert torch.equal(exact, reference)
    strided = weight.transpose(1, 2).contiguous().transpose(1, 2)  # same values, a layout the check never saw
    spied = RoundsDifferently(nn.Linear(50, 7))
    spied.batched = None  # a non-contiguous parameter must not reach the batched form
    own = torch.stack([F.linear(rows[:, i].contiguous(), strided[i], bias[i]) for i in range(k)], 1)
    assert torch.equal(functional_call(spied, {"weight": strided, "bias": bias}, (x,)), own.reshape(b * k, 7))
