"""The federated variant runs on the harness: Federation = Simulation rounds; ``poisonlab fed run`` resumes."""

from __future__ import annotations

import sys

import torch
import yaml

from fedharness.config import ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig
from fedharness.simulation import Simulation
from fedharness.tasks.image_classification import ImageClassificationTask
from poisonlab.runs import read_jsonl
from unlearning_verify.federated import Federation


def test_federation_rounds_equal_the_simulation_and_server_lr_is_the_harness_eta():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(60, 1, 8, 8, generator=g), torch.arange(60) % 10
    task = ImageClassificationTask(x, y, x[:10], y[:10])
    cfg = ExperimentConfig(seed=3, federation=FederationConfig(num_clients=3, clients_per_round=3, rounds=3),
                           local=LocalConfig(epochs=1, lr=0.05, batch_size=10))
    sim = Simulation(cfg, task)
    expected = sim.initial_global()
    for expected, _ in sim.rounds(expected):
        pass
    fed = Federation.build(cfg, task)
    got = fed.train(fed.initial(), 3, [0, 1, 2], record=True)
    assert torch.allclose(got, expected, atol=1e-6)
    doubled = ExperimentConfig(seed=3, federation=FederationConfig(num_clients=3, clients_per_round=3, rounds=3,
                                                                   server_lr=2.0), local=cfg.local)
    step = Federation.build(doubled, task).step(fed.initial(), fed.history[0].updates)
    assert torch.allclose(step - fed.initial(), 2 * fed.history[0].updates.mean(0), atol=1e-6)


def run_cli(args: list[str], monkeypatch) -> int:
    from poisonlab.cli import main

    monkeypatch.setattr(sys, "argv", ["poisonlab", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_fed_run_trains_the_unlearning_task_from_yaml_and_resume_equals_uninterrupted(tmp_path, monkeypatch, data_dir):
    config = tmp_path / "unlearn.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "data": {"name": "digits"},
        "federation": {"num_clients": 3, "clients_per_round": 3, "rounds": 3},
        "local": {"epochs": 1, "lr": 0.05, "batch_size": 32},
        "task": {"name": "unlearning_watermark", "params": {"family": "blended", "owner": 0, "rate": 0.5}},
    }))
    assert run_cli(["fed", "run", str(config), "--out", str(tmp_path / "full")], monkeypatch) == 0
    original = Simulation.run_round

    def crashing(self, r, g):
        if r == 3:
            raise KeyboardInterrupt
        return original(self, r, g)

    monkeypatch.setattr(Simulation, "run_round", crashing)
    assert run_cli(["fed", "run", str(config), "--out", str(tmp_path / "cut")], monkeypatch) != 0  # interrupted
    assert len(read_jsonl(tmp_path / "cut.partial" / "rounds.jsonl")) == 2
    monkeypatch.setattr(Simulation, "run_round", original)
    assert run_cli(["fed", "run", str(config), "--out", str(tmp_path / "cut"), "--resume"], monkeypatch) == 0
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]
    full, cut = read_jsonl(tmp_path / "full" / "rounds.jsonl"), read_jsonl(tmp_path / "cut" / "rounds.jsonl")
    assert strip(full) == strip(cut) and len(full) == 3
    assert full[-1]["main_accuracy"] > full[0]["main_accuracy"] and all(0 <= r["attack_success_rate"] <= 1 for r in full)


def test_unknown_task_params_are_an_input_error(tmp_path, monkeypatch, capsys, data_dir):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"data": {"name": "digits"}, "federation": {"num_clients": 3, "clients_per_round": 3},
                                      "task": {"name": "unlearning_watermark", "params": {"famliy": "lsb"}}}))
    assert run_cli(["fed", "run", str(config), "--out", str(tmp_path / "o")], monkeypatch) == 2
    assert "famliy" in capsys.readouterr().err and not (tmp_path / "o").exists()
