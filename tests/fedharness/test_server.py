import pytest
import torch

from fedharness import aggregators
from fedharness.server import server_step


def test_server_rule_matches_hand_computed_example():
    # G = (1, 2); L₁ − G = (1, 0), L₂ − G = (0, 2), L₃ − G = (−1, 0); Σ = (0, 2); η = 2, n = 6.
    g = torch.tensor([1.0, 2.0])
    locals_ = torch.tensor([[2.0, 2.0], [1.0, 4.0], [0.0, 2.0]])
    new = server_step(g, locals_, eta=2.0, num_clients=6, aggregator=aggregators.get("mean"))
    assert torch.allclose(new, torch.tensor([1.0, 2.0 + 2.0 / 6.0 * 2.0]))


def test_plain_fedavg_is_the_mean_of_local_models():
    g = torch.randn(5)
    locals_ = torch.randn(4, 5)
    new = server_step(g, locals_, eta=10 / 4, num_clients=10, aggregator=aggregators.get("mean"))
    assert torch.allclose(new, locals_.mean(0), atol=1e-6)


def test_mean_rejects_nonfinite_rows_and_counts_them():
    g = torch.zeros(3)
    locals_ = torch.tensor([[1.0, 1.0, 1.0], [float("nan"), 0.0, 0.0], [3.0, 3.0, float("inf")], [3.0, 3.0, 3.0]])
    stats: dict = {}
    new = server_step(g, locals_, eta=1.0, num_clients=4, aggregator=aggregators.get("mean"), stats=stats)
    assert stats["rejected_nonfinite"] == 2
    assert torch.allclose(new, torch.full((3,), 4 / 4 * 2.0))


def test_unknown_aggregator_is_an_input_error():
    with pytest.raises(ValueError, match="unknown aggregator"):
        aggregators.get("no-such-rule")
