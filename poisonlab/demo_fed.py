"""Demo step: MNIST FedAvg twice, without an attack and with one-shot model replacement."""

from __future__ import annotations

import copy
from pathlib import Path

from fedharness.config import AttackConfig, ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig
from poisonlab.fed_report import add_runs
from poisonlab.fed_run import run_experiment
from poisonlab.report import Report
from poisonlab.runs import read_jsonl


def demo_configs(quick: bool, seed: int) -> dict[str, ExperimentConfig]:
    """fed-clean and fed-replacement; the attack strikes late, once the model has converged."""
    rounds, attack_round = (30, 28) if quick else (40, 30)
    clean = ExperimentConfig(
        seed=seed,
        federation=FederationConfig(num_clients=100, clients_per_round=10, rounds=rounds, server_lr=10.0),
        local=LocalConfig(epochs=2, lr=0.1, batch_size=10),
    )
    attacked = copy.deepcopy(clean)
    attacked.attack = AttackConfig(
        name="model_replacement", rounds=[attack_round], params={"epochs": 10, "lr": 0.1, "batch_size": 10}
    )
    return {"fed-clean": clean, "fed-replacement": attacked}


def run(out: Path, quick: bool, seed: int, report: Report) -> dict:
    """Run both experiments into ``out/fed-clean`` and ``out/fed-replacement``; add their section."""
    summaries = {name: run_experiment(cfg, out / name) for name, cfg in demo_configs(quick, seed).items()}
    report.heading("Federated backdoor: model replacement on MNIST")
    report.paragraph(
        "100 clients, 10 sampled per round, FedAvg (η·m/n = 1). In fed-replacement one attacker trains a "
        "backdoored model (pixel pattern → label 2) and submits γ(X − G) + G with γ = n/η (Bagdasaryan et al. 2020)."
    )
    add_runs(report, {name: read_jsonl(out / name / "rounds.jsonl") for name in summaries})
    return summaries
