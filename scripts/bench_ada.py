"""ADA (Sun, Ochiai, Sakuma, IJCNN 2022) reproduced on MNIST with the harness.

Per seed, FedAvg warms a SmallCNN up for ``--warmup`` clean rounds (n clients, m per round, IID);
then one attacker (client 0) strikes in each of ``--attack-rounds`` rounds. ATA = the share of
source-class test images predicted as the attack's target (max over the attack rounds), MTA = accuracy
on the other classes (min over them).

Part 1, does the smallest attacking distance pick an easy target? For each source class, AD(s, t)
at the warmed-up model from the attacker's own source images, and the ATA that a fixed-target attack
(same data, same rounds, no scaling) reaches for every t ≠ s; Spearman ρ(AD, ATA) over the 9 targets.
Part 2: ADA (argmin AD) vs a fixed random target (drawn per seed among the classes other than the
source and ADA's pick at the warmed-up model, so that the two attacks differ) under no defense (mean), norm
clipping (to the round's median norm), coordinate-wise median and Krum (f = 1), stealth scaling on/off.
Writes ``rows.jsonl`` (resumable) and ``metrics.json``.

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/bench_ada.py --out runs/ada
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from fedharness.attacks.ada import attacking_distances
from fedharness.config import AggregatorConfig, AttackConfig, ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig
from fedharness.simulation import Simulation
from fedharness.tasks.image_classification import ImageClassificationTask
from poisonlab import data
from poisonlab.runs import append_jsonl, read_jsonl, write_json

DEFENSES = {
    "mean": AggregatorConfig(name="mean"),
    "norm_clip": AggregatorConfig(name="norm_clip", params={"quantile": 0.5}),
    "median": AggregatorConfig(name="median"),
    "krum": AggregatorConfig(name="krum", params={"f": 1}),
}


def experiment(args: argparse.Namespace, seed: int, aggregator: AggregatorConfig, attack: AttackConfig) -> ExperimentConfig:
    fed = FederationConfig(num_clients=args.clients, clients_per_round=args.per_round,
                           rounds=args.warmup + args.attack_rounds, server_lr=args.clients / args.per_round)
    return ExperimentConfig(seed=seed, federation=fed, local=LocalConfig(epochs=1, lr=0.1, batch_size=32),
                            attack=attack, aggregator=aggregator)


def warm(task: ImageClassificationTask, args: argparse.Namespace, seed: int) -> torch.Tensor:
    cfg = experiment(args, seed, DEFENSES["mean"], AttackConfig())
    cfg.federation.rounds = args.warmup
    sim = Simulation(cfg, task)
    g = sim.initial_global()
    for g, _ in sim.rounds(g):
        pass
    return g


def attack_run(task: ImageClassificationTask, args: argparse.Namespace, seed: int, g: torch.Tensor, defense: str,
               params: dict) -> dict:
    rounds = list(range(args.warmup + 1, args.warmup + args.attack_rounds + 1))
    sim = Simulation(experiment(args, seed, DEFENSES[defense], AttackConfig("ada", 1, rounds, params=params)), task)
    src = task.y_test == params["source"]
    ata, mta, target, scales = [], [], None, []
    for _, record in sim.rounds(g, first_round=rounds[0]):
        info = record["attack_info"]
        target = info.get("ada_target", target)
        scales.append(info.get("ada_scale"))
        pred = task.predict(sim.model, task.x_test)
        ata.append(float((pred[src] == target).float().mean()))
        mta.append(float((pred[~src] == task.y_test[~src]).float().mean()))
    return {"target": target, "ata": max(ata), "ata_rounds": ata, "mta": min(mta), "scales": scales}


def distances(task: ImageClassificationTask, args: argparse.Namespace, seed: int, g: torch.Tensor,
              source: int) -> dict[str, float]:
    """AD(source, t) at the warmed-up model from the attacker's (client 0's) source images."""
    sim = Simulation(experiment(args, seed, DEFENSES["mean"], AttackConfig()), task)
    own = sim.client_data(0)
    x_src = own["x"][own["y"] == source][:500]
    return {str(k): v for k, v in attacking_distances(sim.engine, g, x_src, 10, source).items()}


def argmin_target(task: ImageClassificationTask, args: argparse.Namespace, seed: int, g: torch.Tensor,
                  source: int) -> int:
    d = distances(task, args, seed, g, source)
    return int(min(d, key=d.get))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--sources", nargs="+", type=int, default=[2], help="part 1 source classes")
    p.add_argument("--defense-seeds", nargs="*", type=int, default=[0, 1], help="part 2 seeds (none: part 1 only)")
    p.add_argument("--defense-source", type=int, default=2, help="part 2 source class")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--per-round", type=int, default=5)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--attack-rounds", type=int, default=2)
    p.add_argument("--attack-epochs", type=int, default=None,
                   help="the attacker's local epochs (default: the ada attack's own, the paper's 1)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ds = data.load("mnist")
    task = ImageClassificationTask(*data.image_tensors(ds["train"]), *data.image_tensors(ds["test"]))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "rows.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    done = {r["key"] for r in rows}
    for seed in tqdm(args.seeds, desc="seeds"):
        g = warm(task, args, seed)
        jobs = []
        for s in args.sources:
            jobs += [("target", s, t, "mean", False) for t in range(10) if t != s]
        pick = argmin_target(task, args, seed, g, args.defense_source)
        fixed = int(np.random.default_rng([seed, 7]).choice([t for t in range(10) if t not in (args.defense_source, pick)]))
        for defense in DEFENSES if seed in args.defense_seeds else []:
            for stealth in (True, False):
                jobs += [("ada", args.defense_source, None, defense, stealth),
                         ("fixed", args.defense_source, fixed, defense, stealth)]
        for part, s, t, defense, stealth in tqdm(jobs, desc=f"seed {seed}", leave=False):
            key = f"{part}/{seed}/{s}/{t}/{defense}/{stealth}"
            if key in done:
                continue
            t0 = time.perf_counter()
            params = {"source": s, "target": t, "stealth": stealth}
            if args.attack_epochs is not None:
                params["epochs"] = args.attack_epochs
            res = attack_run(task, args, seed, g, defense, params)
            row = {"key": key, "part": part, "seed": seed, "source": s, "defense": defense, "stealth": stealth,
                   **res, "seconds": time.perf_counter() - t0}
            if part == "target":
                row["distances"] = distances(task, args, seed, g, s)
            append_jsonl(path, row)
            rows.append(row)
    write_json(args.out / "metrics.json", {"settings": {k: str(v) for k, v in vars(args).items()},
                                           **summarise(rows)})
    print_tables(summarise(rows))


def summarise(rows: list[dict]) -> dict:
    """Part 1: ρ(AD, ATA) per (seed, source) over its complete set of targets; part 2: mean ATA/MTA per cell."""
    groups: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        if r["part"] == "target":
            groups.setdefault((r["seed"], r["source"]), []).append(r)
    corr = []
    for (seed, source), group in sorted(groups.items()):
        d = group[0]["distances"]
        if len(group) < len(d):
            continue
        ata = {r["target"]: r["ata"] for r in group}
        argmin = int(min(d, key=d.get))
        corr.append({"seed": seed, "source": source,
                     "spearman": float(spearmanr([d[str(t)] for t in ata], list(ata.values())).statistic),
                     "argmin_ad": argmin, "easiest": max(ata, key=ata.get), "argmin_ata": ata[argmin],
                     "argmin_ata_rank": 1 + sum(a > ata[argmin] for a in ata.values()),
                     "mean_ata": float(np.mean(list(ata.values())))})
    table = {}
    for r in rows:
        if r["part"] in ("ada", "fixed"):
            table.setdefault((r["defense"], r["stealth"], r["part"]), []).append(r)
    defenses = [{"defense": d, "stealth": s, "attack": a, "runs": len(rs),
                 "ata": float(np.mean([r["ata"] for r in rs])), "ata_std": float(np.std([r["ata"] for r in rs])),
                 "mta": float(np.mean([r["mta"] for r in rs]))} for (d, s, a), rs in sorted(table.items())]
    return {"correlation": corr, "defenses": defenses}


def print_tables(summary: dict) -> None:
    for c in summary["correlation"]:
        print(f"seed {c['seed']} source {c['source']}: ρ(AD, ATA) = {c['spearman']:+.2f}; argmin AD → {c['argmin_ad']} "
              f"(ATA {100 * c['argmin_ata']:.1f}%, rank {c['argmin_ata_rank']}/9), easiest {c['easiest']}, "
              f"mean ATA {100 * c['mean_ata']:.1f}%")
    for d in summary["defenses"]:
        print(f"{d['defense']:9s} stealth={d['stealth']!s:5s} {d['attack']:5s}: ATA {100 * d['ata']:5.1f}±{100 * d['ata_std']:.1f}"
              f"  MTA {100 * d['mta']:.1f}  (n={d['runs']})")


if __name__ == "__main__":
    main()
