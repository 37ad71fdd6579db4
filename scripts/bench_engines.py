"""One federated round of 100 MNIST clients: the in-process engine vs Flower's simulation engine at
equal cores, and vs the in-process engine of an earlier commit, same seed, same results.

Same config and seed for all (n = m = 100, FedAvg, the lab's local work: 2 epochs at batch 10 and
the default lr 0.05; at lr 0.1 this fresh SmallCNN's ReLUs all die in round 1 and every engine
reports MTA 0.1135, the share of the digit 1, for several rounds, so a round that learns nothing
would be timed). Each engine runs ``--rounds`` rounds one after another from the same initial model;
the first round is the warm-up (Ray actors start, kernels warm up), the rest give the steady-state
median s/round (the grouped twins' C pooling is compiled before the rounds, its cost reported
as ``native_pool_compile_s``). Equal cores: the in-process engine trains on ``--cores`` worker
threads, Flower runs ``--cores`` ClientApps at once (Ray ``num_cpus``, one CPU each). In-process
runs twice: the path ``--vectorize`` (default ``auto``, the lab's default: on CPU clients in grouped twins of the model,
``engine.group_size`` ``--group-size``) and the per-client loop (``vectorize: false``, the
arithmetic of Flower's ClientApps, which the grouped path equals bit for bit). ``--baseline-commit`` runs the same
rounds with that commit's code (``git archive`` into a temporary folder, its in-process engine given
all cores as intra-op threads) in a subprocess. Reported: per-round times and MTA/ASR, medians,
speedups, the max relative distance of the global models and whether MTA/ASR are identical, the
round's FLOPs and the default path's achieved FLOP/s as a share of the measured fp32 matmul FLOP/s
on ``--cores`` threads, and ``uptime`` load.
``--end-to-end CONFIG`` also times a whole run of CONFIG (e.g. the 40-round
``configs/mnist_model_replacement.yaml``) on both engines. Writes JSON to --out.

    python scripts/bench_engines.py --rounds 4 --baseline-commit 2949f5a^ --out runs/bench_engines.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fedharness.config import DataConfig, EngineConfig, ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig
from fedharness.simulation import Simulation
from fedharness.tasks import Task
from poisonlab.fed_run import build_task

REPO = Path(__file__).resolve().parents[1]


def experiment(args: argparse.Namespace) -> ExperimentConfig:
    cfg = ExperimentConfig(
        seed=args.seed, data=DataConfig("mnist"),
        federation=FederationConfig(num_clients=args.clients, clients_per_round=args.clients, rounds=args.rounds),
        local=LocalConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size),
        engine=EngineConfig(name="inprocess", ray_num_cpus=args.cores),
    )
    if hasattr(cfg.engine, "workers"):  # absent in a baseline commit's config
        cfg.engine.workers = args.cores
    if hasattr(cfg.engine, "group_size") and args.group_size is not None:
        cfg.engine.group_size = args.group_size
    return cfg


def summary(rows: list[dict], global_vec: torch.Tensor) -> dict:
    steady = [r["wall_s"] for r in rows[1:]] or [rows[0]["wall_s"]]
    return {"rounds": rows, "steady_median_s": statistics.median(steady), "_global": global_vec}


def inprocess_rounds(cfg: ExperimentConfig, task: Task, label: str, vectorize: bool | str | None = None) -> dict:
    if vectorize is not None:
        cfg = copy.deepcopy(cfg)
        cfg.engine.vectorize = vectorize
    sim = Simulation(cfg, task)
    g, rows = sim.initial_global(), []
    for r in range(1, cfg.federation.rounds + 1):
        start = time.perf_counter()
        g, record = sim.run_round(r, g)
        rows.append(round_row(record, time.perf_counter() - start))
        print(f"{label} round {r}: {rows[-1]['wall_s']:.2f} s, MTA {record['main_accuracy']:.4f}", flush=True)
    return {**summary(rows, g), "path": record.get("path")}


def compile_native() -> float | None:
    """Seconds to compile and check the grouped twins' C pooling (once per process), taken before the
    timed rounds so that round 1 holds only the engines' own warm-up; None where no compiler is found."""
    from fedharness.native_max_pool import native_kernels  # absent in a baseline commit's tree

    start = time.perf_counter()
    available = native_kernels() is not None
    return time.perf_counter() - start if available else None


def round_row(record: dict, wall: float) -> dict:
    return {"round": record["round"], "wall_s": wall, "main_accuracy": record["main_accuracy"],
            "attack_success_rate": record["attack_success_rate"]}


def flower_rounds(cfg: ExperimentConfig, task: Task, cores: int) -> dict:
    import ray

    from fedharness.engines.flower import rounds

    start = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - start
    sim = Simulation(cfg, task)
    g, rows, last = sim.initial_global(), [], time.perf_counter()
    for g, record in rounds(sim, g, 1):
        now = time.perf_counter()
        rows.append(round_row(record, now - last))
        print(f"flower round {record['round']}: {now - last:.2f} s", flush=True)
        last = now
    ray.shutdown()
    return {**summary(rows, g), "ray_start_s": ray_start}


def baseline_rounds(args: argparse.Namespace) -> dict:
    """The same rounds with ``--baseline-commit``'s code, in a subprocess on that commit's tree."""
    with tempfile.TemporaryDirectory() as tree:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline_commit], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
        out = Path(tree) / "baseline.json"
        cmd = [sys.executable, __file__, "--inprocess-only", str(out), "--clients", str(args.clients),
               "--rounds", str(args.rounds), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
               "--seed", str(args.seed), "--cores", str(args.cores), "--lr", str(args.lr)]
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": tree}, cwd=tree)
        result = json.loads(out.read_text())
        result["_global"] = torch.tensor(result.pop("global"))
    return result


def end_to_end(path: Path, cores: int, seed: int) -> dict:
    """Wall time of a whole run of the YAML ``path`` on each engine (same seed), final MTA/ASR."""
    from poisonlab.config import from_dict, load_yaml
    from poisonlab.fed_run import run_experiment

    out = {}
    for engine in ("inprocess", "flower"):
        cfg = from_dict(ExperimentConfig, load_yaml(path), source=str(path))
        cfg.seed, cfg.engine.name, cfg.engine.workers, cfg.engine.ray_num_cpus = seed, engine, cores, cores
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = run_experiment(cfg, Path(tmp) / "run", progress=False)
            out[engine] = {"wall_s": time.perf_counter() - start, "final_main_accuracy": result["final_main_accuracy"],
                           "final_attack_success_rate": result["final_attack_success_rate"]}
        print(f"end to end {path} ({engine}): {out[engine]}", flush=True)
    return out


def compute_floor(round_s: float, task: Task, epochs: int) -> dict:
    """The round's FLOPs (every client: E passes over its data), the achieved FLOP/s over the whole
    round (training, server step and evaluation) and its share of the measured fp32 matmul FLOP/s."""
    from gpu_fed_round import matmul_flops, round_flops

    flops = round_flops(task, epochs, torch.device("cpu"))
    peak = matmul_flops(torch.device("cpu"), torch.float32, 2048)
    return {"round_flops": flops, "achieved_flops_per_s": flops / round_s, "matmul_fp32_flops_per_s": peak,
            "share_of_matmul": flops / round_s / peak}


def compare(reference: dict, other: dict) -> dict:
    a, b = reference["_global"], other["_global"]
    same = all(x["main_accuracy"] == y["main_accuracy"] and x["attack_success_rate"] == y["attack_success_rate"]
               for x, y in zip(reference["rounds"], other["rounds"]))
    return {"speedup_steady": other["steady_median_s"] / reference["steady_median_s"],
            "max_rel_diff_global": float((a - b).norm() / a.norm()), "identical_mta_asr": same}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4, help="rounds per engine; the first is the warm-up")
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)), help="cores each engine gets")
    parser.add_argument("--epochs", type=int, default=2, help="local epochs")
    parser.add_argument("--batch-size", type=int, default=10, help="local batch size")
    parser.add_argument("--lr", type=float, default=LocalConfig().lr, help="local learning rate")
    parser.add_argument("--vectorize", default="auto", type=lambda v: {"true": True, "false": False}.get(v, v),
                        help="engine.vectorize of the timed in-process path (auto, grouped, true, false)")
    parser.add_argument("--group-size", type=int, default=None,
                        help="engine.group_size of the grouped path (default: EngineConfig's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-commit", default=None, help="also time this commit's in-process engine")
    parser.add_argument("--no-flower", action="store_true")
    parser.add_argument("--end-to-end", type=Path, default=None, help="a YAML config to run whole on both engines")
    parser.add_argument("--inprocess-only", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    return parser


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(args.cores)
    cfg = experiment(args)
    task = build_task(cfg)  # loaded once, shared by every engine (the runs only read it)
    if args.inprocess_only:  # the baseline subprocess
        result = inprocess_rounds(cfg, task, "baseline")
        result["global"] = result.pop("_global").tolist()
        args.inprocess_only.write_text(json.dumps(result))
        return
    load = {"before": os.getloadavg()}
    native_s = compile_native()
    results = {"inprocess": inprocess_rounds(cfg, task, "in-process", vectorize=args.vectorize),
               "inprocess_loop": inprocess_rounds(cfg, task, "in-process loop", vectorize=False)}
    if args.baseline_commit:
        results["baseline"] = baseline_rounds(args)
    if not args.no_flower:
        results["flower"] = flower_rounds(cfg, task, args.cores)
    load["after"] = os.getloadavg()
    report = {**summary_report(args, results, load, task), "native_pool_compile_s": native_s}
    if args.end_to_end:
        report["end_to_end"] = end_to_end(args.end_to_end, args.cores, args.seed)
    print(json.dumps(report, indent=2))
    print(f"load {load}; in-process ({results['inprocess']['path']}) {results['inprocess']['steady_median_s']:.2f} s/round; "
          + "; ".join(f"{k} {v['steady_median_s']:.2f} s/round = {report['vs_inprocess'][k]['speedup_steady']:.2f}x, "
                      f"global rel diff {report['vs_inprocess'][k]['max_rel_diff_global']:.1e}, "
                      f"same MTA/ASR {report['vs_inprocess'][k]['identical_mta_asr']}"
                      for k, v in results.items() if k != "inprocess"), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


def summary_report(args: argparse.Namespace, results: dict[str, dict], load: dict, task: Task) -> dict:
    """The JSON report: settings, load, every engine's rounds, speedups against both in-process paths."""
    return {
        "clients": args.clients, "rounds": args.rounds, "epochs": args.epochs, "batch_size": args.batch_size,
        "cores": args.cores, "baseline_commit": args.baseline_commit, "loadavg_1_5_15": load,
        "vs_inprocess": {k: compare(results["inprocess"], v) for k, v in results.items() if k != "inprocess"},
        "vs_inprocess_loop": {k: compare(results["inprocess_loop"], v) for k, v in results.items()
                              if k not in ("inprocess", "inprocess_loop")},
        "compute_floor": compute_floor(results["inprocess"]["steady_median_s"], task, args.epochs),
        **{k: {kk: vv for kk, vv in v.items() if kk != "_global"} for k, v in results.items()},
    }


if __name__ == "__main__":
    main()
