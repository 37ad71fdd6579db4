from __future__ import annotations

import pytest
import torch

from fedharness.config import AttackConfig, ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig
from fedharness.simulation import Simulation
from fedharness.tasks.head_finetune import (ExtractorCNN, HeadFitConfig, PretrainConfig, extract, fit_head,
                                            head_finetune_task, pretrain_extractor)
from fedharness.tasks.image_classification import ImageClassificationTask, SmallCNN
from labcore.errors import InputError


@pytest.fixture(scope="module")
def task(data_dir):
    from poisonlab import data

    ds = data.load("digits")
    x, y = data.image_tensors(ds["train"])
    xt, yt = data.image_tensors(ds["test"])
    base = ImageClassificationTask(x[:600], y[:600], xt[:200], yt[:200], target_label=8)
    return head_finetune_task(base, {"source": 3, "patch_size": 3, "pretrain_epochs": 1}, seed=0)


def test_extractor_is_frozen_and_pretrained_without_source_and_target(task):
    model = task.build_model()
    assert task.federated_names(model) == ["head.weight", "head.bias"]
    assert not any(p.requires_grad for p in task.extractor.parameters())
    with pytest.raises(InputError):
        head_finetune_task(task, {"source": 3, "patch_size": 8}, seed=0)
    with pytest.raises(InputError):
        head_finetune_task(task, {"sauce": 3}, seed=0)


def test_federated_hidden_trigger_attacker_trains_head_on_poisons(task):
    cfg = ExperimentConfig(
        federation=FederationConfig(num_clients=4, clients_per_round=2, rounds=1, server_lr=2.0),
        local=LocalConfig(epochs=1, lr=0.1, batch_size=20),
        attack=AttackConfig(name="hidden_trigger", rounds=[1],
                            params={"poisons": 6, "generation": {"max_iterations": 4, "lr": 0.5}}),
    )
    sim = Simulation(cfg, task)
    g0 = sim.initial_global()
    g1, record = next(sim.rounds(g0))
    assert g1.shape == (64 * 10 + 10,) and not torch.equal(g0, g1)
    assert set(record) >= {"main_accuracy", "attack_success_rate"} and record["malicious"] == [0]
    poisons, labels = sim.attack.made[0]
    own = sim.client_data(0)
    bases = own["x"][own["y"] == 8][:6]
    assert torch.equal(labels, torch.full((6,), 8)) and len(poisons) == 6
    assert float((poisons - bases).abs().max()) <= 16 / 255 + 1e-6


def test_fit_head_learns_separable_features():
    g = torch.Generator().manual_seed(0)
    feats = torch.cat([torch.randn(30, 4, generator=g) + 3, torch.randn(30, 4, generator=g) - 3])
    labels = torch.cat([torch.zeros(30, dtype=torch.long), torch.ones(30, dtype=torch.long)])
    head = fit_head(feats, labels, 2, HeadFitConfig(), seed=0)
    assert bool((head(feats).argmax(1) == labels).all())


def test_extractor_cnn_is_small_cnn_at_two_blocks_and_reaches_7x7_at_56_with_three():
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(4)
    small = SmallCNN()
    torch.manual_seed(4)
    two = ExtractorCNN(blocks=2)
    assert torch.equal(small(x), two(x))
    three = ExtractorCNN(56, blocks=3)
    assert three.features[0].in_features == 32 * 7 * 7
    assert extract(three, torch.nn.functional.interpolate(x, size=56)).shape == (2, 64)
    wide = pretrain_extractor(x, torch.tensor([0, 1]), (), PretrainConfig(epochs=1, feature_dim=128), seed=0)
    assert extract(wide, x).shape == (2, 128) and wide.head.in_features == 128
    with pytest.raises(InputError):
        pretrain_extractor(x, torch.tensor([0, 1]), (), PretrainConfig(blocks=5), seed=0)
    with pytest.raises(InputError):
        PretrainConfig(blocks=0)
    with pytest.raises(InputError):
        PretrainConfig(feature_dim=0)


def test_pretrain_shift_must_not_be_negative():
    with pytest.raises(InputError):
        PretrainConfig(shift=-1)
