"""Demo step: MNIST FedAvg twice, without an attack and with one-shot model replacement.

The two runs are the same experiment until the attack round (each round's randomness derives from
(seed, round)), so the rounds before it are trained once and both runs resume from that checkpoint,
as ``poisonlab fed run --resume`` would after an interruption.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path

from fedharness.config import AttackConfig, DataConfig, ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig
from poisonlab.fed_report import add_runs
from poisonlab.fed_run import run_experiment
from poisonlab.report import Report
from poisonlab.runs import read_jsonl, staging_path, write_yaml


# size → (dataset, clients, clients per round, rounds, attack round); tiny is a mechanics check on 8×8 digits.
# Quick strikes at round 18 of 20 (10 rounds fewer than before; clean MTA 0.94 there, 0.96 at round 30): ASR 1.00 in
# the attack round at MTA 0.90, then 0.55–0.58 in the two rounds after (seed 0).
SIZES = {"tiny": ("digits", 10, 5, 4, 3), "quick": ("mnist", 100, 10, 20, 18), "full": ("mnist", 100, 10, 40, 30)}


def demo_configs(size: str, seed: int, cores: int | None = None) -> dict[str, ExperimentConfig]:
    """fed-clean and fed-replacement; the attack strikes late, once the model has converged. ``cores``: the
    in-process engine's worker threads (None: one per core; the results do not depend on it)."""
    dataset, n, m, rounds, attack_round = SIZES[size]
    clean = ExperimentConfig(
        seed=seed,
        data=DataConfig(name=dataset),
        federation=FederationConfig(num_clients=n, clients_per_round=m, rounds=rounds, server_lr=float(n / m)),
        local=LocalConfig(epochs=2, lr=0.1, batch_size=10),
    )
    clean.engine.workers = cores
    attacked = copy.deepcopy(clean)
    attacked.attack = AttackConfig(
        name="model_replacement", rounds=[attack_round], params={"epochs": 10, "lr": 0.1, "batch_size": 10}
    )
    return {"fed-clean": clean, "fed-replacement": attacked}


def run(out: Path, size: str, seed: int, report: Report, cores: int | None = None) -> dict:
    """Run both experiments into ``out/fed-clean`` and ``out/fed-replacement``; add their section. ``cores``:
    the clients' worker threads (1 when the demo runs another step beside this one). The returned summaries
    leave out wall times (they stay in each run's metrics.json), so the same seed gives the same numbers."""
    configs = demo_configs(size, seed, cores)
    shared = _shared_rounds(configs["fed-clean"], configs["fed-replacement"].attack.rounds[0] - 1, out / "fed-shared")
    summaries = {}
    for name, cfg in configs.items():
        _fork(shared, staging_path(out / name), cfg)
        summary = run_experiment(cfg, out / name, resume=True)
        summaries[name] = {k: v for k, v in summary.items() if not k.endswith("_time_s")}
    shutil.rmtree(shared)
    fed = configs["fed-clean"].federation
    report.heading(f"Federated backdoor: model replacement on {configs['fed-clean'].data.name}")
    report.paragraph(
        f"{fed.num_clients} clients, {fed.clients_per_round} sampled per round, FedAvg (η·m/n = 1). In fed-replacement "
        "one attacker trains a backdoored model (pixel pattern → label 2) and submits γ(X − G) + G with γ = n/η "
        "(Bagdasaryan et al. 2020)."
    )
    add_runs(report, {name: read_jsonl(out / name / "rounds.jsonl") for name in summaries})
    return summaries


def _shared_rounds(clean: ExperimentConfig, rounds: int, out: Path) -> Path:
    """Run the rounds the clean and the attacked run have in common; returns their run directory."""
    prefix = copy.deepcopy(clean)
    prefix.federation = dataclasses.replace(clean.federation, rounds=rounds)
    run_experiment(prefix, out)
    return out


def _fork(shared: Path, stage: Path, cfg: ExperimentConfig) -> None:
    """An interrupted run of ``cfg`` at the shared rounds' checkpoint, ready for ``resume``."""
    shutil.copytree(shared, stage, ignore=shutil.ignore_patterns("metrics.json", "report.html"))
    write_yaml(stage / "config.yaml", cfg)
