"""One federated round of 100 MNIST clients: the in-process engine vs Flower's simulation engine.

Same config and seed for both (n = m = 100, FedAvg; by default the lab's 2 local epochs at batch 10).
Reports the in-process round time, Flower's first round (Ray actors warming up) and steady round
(``--rounds 2``), the start-up of Ray, and the max |difference| of the resulting global models.
``--epochs 1 --batch-size 80`` (one full-batch step per client) shows the engines' overhead rather
than the local training both run identically. Writes JSON to --out.

    nice -n 10 .venv/bin/python scripts/bench_engines.py --clients 100 --rounds 2 --out runs/bench_engines.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from fedharness.config import DataConfig, EngineConfig, ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig
from fedharness.simulation import Simulation
from poisonlab.fed_run import build_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ray-cpus", type=int, default=2, help="Ray CPUs = concurrent ClientApps (1 CPU each)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the in-process engine")
    parser.add_argument("--epochs", type=int, default=2, help="local epochs")
    parser.add_argument("--batch-size", type=int, default=10, help="local batch size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = ExperimentConfig(
        seed=args.seed, data=DataConfig("mnist"),
        federation=FederationConfig(num_clients=args.clients, clients_per_round=args.clients, rounds=args.rounds),
        local=LocalConfig(epochs=args.epochs, lr=0.1, batch_size=args.batch_size),
        engine=EngineConfig(name="flower", ray_num_cpus=args.ray_cpus),
    )
    task = build_task(cfg)

    sim = Simulation(cfg, task)
    inprocess = []
    g = sim.initial_global()
    for r in range(1, args.rounds + 1):
        start = time.perf_counter()
        g, record = sim.run_round(r, g)
        inprocess.append({"round": r, "wall_s": time.perf_counter() - start, "main_accuracy": record["main_accuracy"]})
        print(f"in-process round {r}: {inprocess[-1]['wall_s']:.2f} s ({record['path']})", flush=True)

    import ray

    from fedharness.engines.flower import rounds

    start = time.perf_counter()
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - start
    flower_sim = Simulation(cfg, task)
    flower = []
    last = time.perf_counter()
    g_flower = flower_sim.initial_global()
    for g_flower, record in rounds(flower_sim, g_flower, 1):
        now = time.perf_counter()
        flower.append({"round": record["round"], "wall_s": now - last, "main_accuracy": record["main_accuracy"]})
        print(f"flower round {record['round']}: {now - last:.2f} s", flush=True)
        last = now
    ray.shutdown()
    result = {
        "clients": args.clients, "rounds": args.rounds, "epochs": args.epochs, "batch_size": args.batch_size, "ray_cpus": args.ray_cpus, "threads": args.threads,
        "ray_start_s": ray_start,
        "inprocess": inprocess, "flower": flower, "max_abs_diff_global": float((g - g_flower).abs().max()),
        "steady_speedup": flower[-1]["wall_s"] / inprocess[-1]["wall_s"],
        "first_round_speedup": flower[0]["wall_s"] / inprocess[0]["wall_s"],
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
