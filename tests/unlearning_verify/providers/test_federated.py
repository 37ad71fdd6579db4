import torch

from fedharness.config import ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig
from fedharness.tasks.image_classification import ImageClassificationTask
from unlearning_verify.federated import Federation
from unlearning_verify.providers.federaser import FedEraser
from unlearning_verify.providers.federated_retrain import FederatedRetrain
from unlearning_verify.providers.passive_exclusion import PassiveExclusion


def federation(rounds: int = 4) -> tuple[Federation, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(80, 1, 8, 8, generator=g), torch.arange(80) % 10
    cfg = ExperimentConfig(seed=0, federation=FederationConfig(num_clients=4, clients_per_round=4, rounds=rounds),
                           local=LocalConfig(epochs=2, lr=0.05, batch_size=10))
    fed = Federation.build(cfg, ImageClassificationTask(x, y, x[:10], y[:10]))
    final = fed.train(fed.initial(), rounds, list(range(4)), record=True)
    return fed, final


def poison_client(fed: Federation, client: int) -> None:
    """After training, the leaving client's data turns to NaN: any later use of it would show."""
    fed.clients[client] = {k: (v.float() * float("nan")).to(v.dtype) if v.is_floating_point() else v
                           for k, v in fed.clients[client].items()}


def test_federaser_never_touches_the_leaving_client_and_keeps_update_norms(monkeypatch):
    fed, final = federation()
    assert len(fed.history) == 4
    poison_client(fed, 1)
    applied = []
    real_step = fed.step
    monkeypatch.setattr(fed, "step", lambda g, u: applied.append(u) or real_step(g, u))
    out = FedEraser(interval=2, calibration_ratio=0.5).unlearn(fed, final, leaving=1)
    assert torch.isfinite(out).all() and not torch.equal(out, final)
    assert len(applied) == 2  # kept rounds 0 and 2
    remaining = [0, 2, 3]
    assert torch.equal(applied[0], fed.history[0].updates[remaining])
    assert torch.allclose(applied[1].norm(dim=1), fed.history[2].updates[remaining].norm(dim=1), rtol=1e-4)


def test_passive_exclusion_trains_without_the_client():
    fed, final = federation(rounds=2)
    poison_client(fed, 0)
    out = PassiveExclusion(rounds=2).unlearn(fed, final, leaving=0)
    assert torch.isfinite(out).all() and not torch.equal(out, final)


def test_federated_retrain_restarts_from_the_initial_model_without_the_client():
    fed, final = federation(rounds=3)
    poison_client(fed, 1)  # NaN data: any use of the leaving client would make the result non-finite
    out = FederatedRetrain().unlearn(fed, final, leaving=1)
    assert torch.isfinite(out).all() and not torch.equal(out, final)
    assert torch.equal(out, fed.train(fed.history[0].global_vec, 3, [0, 2, 3]))  # 3 rounds from the start
    assert not torch.equal(out, fed.train(final, 3, [0, 2, 3]))  # not a continuation of the final model
