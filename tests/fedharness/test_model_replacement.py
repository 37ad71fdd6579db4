import torch

from fedharness import aggregators
from fedharness.attacks.model_replacement import replace, replacement_scale
from fedharness.server import server_step


def test_replacement_yields_the_backdoored_model_when_benign_updates_vanish():
    n, m, eta = 100, 10, 1.0
    g = torch.randn(50)
    x = g + torch.randn(50)
    benign = g.repeat(m - 1, 1)
    attacker = replace(x, g, replacement_scale(n, eta))
    new = server_step(g, torch.cat([benign, attacker[None]]), eta=eta, num_clients=n, aggregator=aggregators.get("mean"))
    assert torch.allclose(new, x, atol=1e-5)


def test_colluders_split_gamma():
    n, eta = 100, 10.0
    g = torch.randn(20)
    x = g + torch.randn(20)
    gamma = replacement_scale(n, eta, colluders=2)
    assert gamma == n / eta / 2
    rows = torch.stack([replace(x, g, gamma)] * 2 + [g] * 8)
    new = server_step(g, rows, eta=eta, num_clients=n, aggregator=aggregators.get("mean"))
    assert torch.allclose(new, x, atol=1e-5)
