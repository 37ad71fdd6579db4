"""Wall time of one federated MNIST round, vectorized (vmap) vs per-client loop, same seed.

100 clients (IID shards of MNIST-8k), 10 and 100 sampled per round, E=2, batch 10. Each timing is
the median of ``--repeats`` rounds after one warm-up; the two paths' new global models must agree.

    python scripts/bench_fed_round.py [--threads 2] [--repeats 3] [--out bench_fed_round.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from fedharness.config import ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig
from fedharness.simulation import Simulation
from fedharness.tasks.image_classification import ImageClassificationTask
from poisonlab import data


def time_round(task: ImageClassificationTask, sampled: int, vectorize: bool, repeats: int, seed: int):
    cfg = ExperimentConfig(
        seed=seed,
        federation=FederationConfig(num_clients=100, clients_per_round=sampled, rounds=repeats + 1),
        local=LocalConfig(epochs=2, lr=0.1, batch_size=10),
    )
    cfg.engine.vectorize = vectorize
    cfg.engine.chunk_size = 100
    sim = Simulation(cfg, task)
    g = sim.initial_global()
    sim.run_round(1, g)  # warm-up
    times, result = [], None
    for r in range(2, repeats + 2):
        start = time.perf_counter()
        result, _ = sim.run_round(r, g)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_fed_round.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ds = data.load("mnist")
    task = ImageClassificationTask(*data.image_tensors(ds["train"]), *data.image_tensors(ds["test"]))
    rows = []
    for sampled in (10, 100):
        t_vmap, g_vmap = time_round(task, sampled, True, args.repeats, args.seed)
        t_loop, g_loop = time_round(task, sampled, False, args.repeats, args.seed)
        row = {
            "clients": 100,
            "sampled": sampled,
            "vmap_s_per_round": round(t_vmap, 3),
            "loop_s_per_round": round(t_loop, 3),
            "speedup": round(t_loop / t_vmap, 2),
            "max_abs_diff_global": float((g_vmap - g_loop).abs().max()),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    with open(args.out, "w") as f:
        json.dump({"threads": args.threads, "device": "cpu", "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
