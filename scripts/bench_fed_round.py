"""One federated MNIST round on this machine's CPUs: its FLOPs and achieved FLOP/s against the measured
dense matmul FLOP/s, per-client loop vs vmap chunks, on all cores.

100 clients (IID shards of MNIST-8k), all sampled, E=2, batch 10, lr 0.1: 1,600 client steps.
The engine trains on ``--cores`` worker threads (one intra-op thread each); the matmul peak is an
``--matmul-n`` square fp32 matmul on ``--cores`` threads. Each timing is the median of ``--repeats``
rounds after one warm-up, all from the same global model; the paths' new global models are compared.
The GPU counterpart (chunk sizes, peak memory) is ``scripts/gpu_fed_round.py``, whose helpers count
the FLOPs and time the matmul here.

    python scripts/bench_fed_round.py [--cores 2] [--repeats 3] [--out bench_fed_round.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from fedharness.config import ExperimentConfig, FederationConfig
from fedharness.simulation import Simulation
from fedharness.tasks.image_classification import ImageClassificationTask
from gpu_fed_round import LOCAL, flops_per_sample_step, matmul_flops, mnist_tensors


def time_round(task: ImageClassificationTask, args: argparse.Namespace, vectorize: bool) -> dict:
    cfg = ExperimentConfig(seed=args.seed, federation=FederationConfig(num_clients=100, clients_per_round=100,
                                                                       rounds=args.repeats + 1), local=LOCAL)
    cfg.engine.vectorize, cfg.engine.chunk_size, cfg.engine.workers = vectorize, args.chunk, args.cores
    sim = Simulation(cfg, task)
    g = sim.initial_global()
    rounds, trains, record, new_global = [], [], {}, g
    for r in range(1, args.repeats + 2):
        start = time.perf_counter()
        plan = sim.plan(r)
        local_vecs, info = sim.local_models(r, g, plan)
        trained = time.perf_counter()
        new_global, record = sim.finish_round(r, g, plan, local_vecs, start, "vmap" if vectorize else "loop", info)
        if r > 1:
            trains.append(trained - start)
            rounds.append(time.perf_counter() - start)
        print(f"{'vmap' if vectorize else 'loop'} round {r}: {time.perf_counter() - start:.2f} s", flush=True)
    return {"path": f"vmap chunk {args.chunk}" if vectorize else "per-client loop",
            "s_per_round": statistics.median(rounds), "train_s_per_round": statistics.median(trains),
            "main_accuracy": record["main_accuracy"], "attack_success_rate": record["attack_success_rate"],
            "_global": new_global}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=50, help="vmap chunk size")
    parser.add_argument("--no-vmap", action="store_true", help="time the per-client loop only")
    parser.add_argument("--matmul-n", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_fed_round.json")
    args = parser.parse_args()
    torch.set_num_threads(args.cores)
    task = ImageClassificationTask(*mnist_tensors())
    per_sample = flops_per_sample_step(task, torch.device("cpu"))
    round_flops = per_sample * LOCAL.epochs * len(task.x_train)
    peak = matmul_flops(torch.device("cpu"), torch.float32, args.matmul_n)
    rows = [time_round(task, args, False)] + ([] if args.no_vmap else [time_round(task, args, True)])
    reference = rows[0]["_global"]
    for row in rows:
        g = row.pop("_global")
        row["max_rel_diff_global_vs_loop"] = float((g - reference).norm() / reference.norm())
        row["achieved_flops_per_s"] = round_flops / row["train_s_per_round"]
        row["share_of_matmul_flops"] = row["achieved_flops_per_s"] / peak
        print(json.dumps(row), flush=True)
    result = {"cores": args.cores, "device": "cpu", "loadavg_1_5_15": os.getloadavg(),
              "flops_per_sample_step": per_sample, "round_flops": round_flops,
              "matmul_fp32_flops_per_s": peak, "matmul_n": args.matmul_n, "rows": rows}
    print(json.dumps(result, indent=2))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
