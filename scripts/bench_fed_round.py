"""One federated MNIST round on this machine's CPUs, per client path: its FLOPs and achieved FLOP/s
against the measured dense matmul FLOP/s, and where the round's time goes.

100 clients (IID shards of MNIST-8k), all sampled, the lab's local work (E=2, batch 10, the default
lr): 1,600 client steps. Each path (``--paths``: ``loop``, ``grouped:K``, ``vmap:C``, each with an
optional ``@W``) runs in its own ``Simulation`` on ``--cores`` (or W) worker threads (one intra-op
thread each); the paths take turns, round after round, each round from the same initial global
model, so machine load hits them alike.
Reported per path: median s/round, of which local training and the rest (server step, MTA/ASR),
the relative distance of its new global model from the first path's, whether MTA/ASR equal the
first path's, achieved FLOP/s of training and its share of the matmul peak (an ``--matmul-n``
square fp32 matmul on ``--cores`` threads). The GPU counterpart is ``scripts/gpu_fed_round.py``,
whose helpers count the FLOPs and time the matmul here.

    python scripts/bench_fed_round.py [--cores 2] [--repeats 3] [--paths loop grouped:8 grouped:16@1]
        [--out bench_fed_round.json]
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
from gpu_fed_round import LOCAL, matmul_flops, mnist_tensors, round_flops

VECTORIZE = {"loop": False, "grouped": "grouped", "vmap": True}


def simulation(task: ImageClassificationTask, path: str, args: argparse.Namespace) -> Simulation:
    """A 100-client Simulation whose engine runs ``path`` (``name[:size][@workers]``; workers default
    to ``--cores``)."""
    path, _, workers = path.partition("@")
    name, _, size = path.partition(":")
    cfg = ExperimentConfig(seed=args.seed, federation=FederationConfig(num_clients=100, clients_per_round=100,
                                                                       rounds=args.repeats + 1), local=LOCAL)
    cfg.engine.vectorize, cfg.engine.workers = VECTORIZE[name], int(workers) if workers else args.cores
    if size:
        cfg.engine.group_size = cfg.engine.chunk_size = int(size)
    return Simulation(cfg, task)


def one_round(sim: Simulation, global_vec: torch.Tensor) -> dict:
    """Round 1 from ``global_vec``: wall times of training and of the whole round, the new global."""
    start = time.perf_counter()
    plan = sim.plan(1)
    local_vecs, info = sim.local_models(1, global_vec, plan)
    trained = time.perf_counter()
    new_global, record = sim.finish_round(1, global_vec, plan, local_vecs, start, sim.clients_path, info)
    return {"train_s": trained - start, "round_s": time.perf_counter() - start, "global": new_global,
            "metrics": (record["main_accuracy"], record["attack_success_rate"]), "path": record["path"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per path after one warm-up")
    parser.add_argument("--paths", nargs="+", default=["loop", "grouped:8"],
                        help="loop, grouped:K, vmap:C, each optionally @W for W worker threads")
    parser.add_argument("--matmul-n", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_fed_round.json")
    args = parser.parse_args()
    torch.set_num_threads(args.cores)
    task = ImageClassificationTask(*mnist_tensors())
    flops = round_flops(task, LOCAL.epochs, torch.device("cpu"))
    peak = matmul_flops(torch.device("cpu"), torch.float32, args.matmul_n)
    sims = {p: simulation(task, p, args) for p in args.paths}
    start = next(iter(sims.values())).initial_global()
    runs: dict[str, list[dict]] = {p: [] for p in args.paths}
    for r in range(args.repeats + 1):  # the first round of each path warms up
        for p, sim in sims.items():
            runs[p].append(one_round(sim, start))
            print(f"{p} round {r}: {runs[p][-1]['round_s']:.2f} s (training {runs[p][-1]['train_s']:.2f} s)", flush=True)
    first = runs[args.paths[0]][-1]
    rows = [row(p, runs[p], first, flops, peak) for p in args.paths]
    result = {"cores": args.cores, "device": "cpu", "loadavg_1_5_15": os.getloadavg(),
              "flops_per_sample_step": flops / (LOCAL.epochs * len(task.x_train)), "round_flops": flops,
              "matmul_fp32_flops_per_s": peak, "matmul_n": args.matmul_n, "rows": rows}
    print(json.dumps(result, indent=2))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


def row(path: str, runs: list[dict], first: dict, round_flops: float, peak: float) -> dict:
    """Medians of the timed rounds of one path and its agreement with the first path."""
    timed = runs[1:] or runs
    train = statistics.median(r["train_s"] for r in timed)
    whole = statistics.median(r["round_s"] for r in timed)
    last = runs[-1]
    return {"path": path, "ran": last["path"], "s_per_round": whole, "train_s_per_round": train,
            "other_s_per_round": statistics.median(r["round_s"] - r["train_s"] for r in timed),
            "main_accuracy": last["metrics"][0], "attack_success_rate": last["metrics"][1],
            "same_mta_asr_as_first": last["metrics"] == first["metrics"],
            "max_rel_diff_global_vs_first": float((last["global"] - first["global"]).norm() / first["global"].norm()),
            "achieved_flops_per_s": round_flops / train, "share_of_matmul_flops": round_flops / train / peak}


if __name__ == "__main__":
    main()
