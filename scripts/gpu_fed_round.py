"""One federated MNIST round on a GPU: clients under vmap in chunks vs the per-client loop.

The round is the lab's: 100 clients (IID shards of the 8,000 MNIST training images), all 100
sampled, FedAvg, 2 local epochs of SGD (the default lr 0.05) at batch 10, so 1,600 client steps. For
each chunk size the in-process engine trains the round's clients ``chunk`` at a time under
``torch.func.vmap`` on ``--device``, for each ``--groups`` size in grouped twins of the model; the
per-client loop runs the same clients one after another. Each timing is the
median of ``--repeats`` rounds after one warm-up round, all from the same global model.

Reported per path: s/round (local training + server step + MTA/ASR evaluation), local-training
s/round, clients/s, peak GPU memory, the round's FLOPs (counted by ``torch.utils.flop_counter`` on
one client step: convolutions and matmuls, forward and backward) and the achieved FLOP/s of local
training next to the measured dense matmul FLOP/s (fp32, TF32, bf16) of the same device; and the
max relative distance of each path's new global model from the loop's.

    python scripts/gpu_fed_round.py --out runs/gpu_fed_round          # CUDA, < 3 min on an H100
    python scripts/gpu_fed_round.py --out /tmp/g --device cpu --clients 10 --chunks 5 10 --repeats 1 --matmul-n 512

MNIST comes from ``$POISONLAB_DATA_DIR/mnist`` through ``poisonlab.data`` (HF ``datasets``); without
``datasets`` installed the IDX files are read and split here the same way (stratified 8,000/2,000,
scikit-learn, seed 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fedharness.config import ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig, masked_mean_loss, module_state
from fedharness.simulation import Simulation
from fedharness.tasks.image_classification import ImageClassificationTask

LOCAL = LocalConfig(epochs=2, batch_size=10)  # the default lr (0.05); at 0.1 the fresh model's ReLUs die in round 1


def mnist_tensors() -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test) of the lab's MNIST split."""
    try:
        from poisonlab import data
    except ImportError:
        return _mnist_without_datasets()
    ds = data.load("mnist")
    return (*data.image_tensors(ds["train"]), *data.image_tensors(ds["test"]))


def _mnist_without_datasets() -> tuple[torch.Tensor, ...]:
    """The same split as ``poisonlab.data`` (stratified, test fraction 0.2, seed 0, sorted indices)."""
    from sklearn.model_selection import train_test_split

    root = Path(os.environ.get("POISONLAB_DATA_DIR", "data")) / "mnist"
    images = _read_idx(root / "t10k-images-idx3-ubyte.gz")
    labels = _read_idx(root / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    train, test = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0)
    out = []
    for idx in (np.sort(train), np.sort(test)):
        out += [torch.from_numpy(images[idx].astype(np.float32) / 255.0).unsqueeze(1), torch.from_numpy(labels[idx])]
    return tuple(out)


def _read_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path, "rb").read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int, tf32: bool = False) -> float:
    """Measured FLOP/s of an n×n dense matmul (median of 5 timed batches of calls)."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    calls = 20 if device.type == "cuda" else 3
    for _ in range(3):
        a @ b
    sync(device)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            a @ b
        sync(device)
        times.append((time.perf_counter() - start) / calls)
    torch.backends.cuda.matmul.allow_tf32 = False
    return 2 * n**3 / statistics.median(times)


def flops_per_sample_step(task: ImageClassificationTask, device: torch.device) -> float:
    """FLOPs of one training step (forward + backward) per sample, counted on a batch of 10."""
    model = task.build_model().to(device)
    params, frozen = module_state(model, task.federated_names(model))
    params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    batch = {"x": task.x_train[:10].to(device), "y": task.y_train[:10].to(device)}
    counter = FlopCounterMode(display=False)
    with counter:
        loss = masked_mean_loss(model, task.per_sample_loss, frozen)(params, batch, torch.ones(10, device=device))
        torch.autograd.grad(loss, list(params.values()))
    return counter.get_total_flops() / 10


def round_flops(task: ImageClassificationTask, epochs: int, device: torch.device) -> float:
    """FLOPs of a round in which every client trains: ``epochs`` passes of a training step over the
    task's whole training set (each sample in one client's shard)."""
    return flops_per_sample_step(task, device) * epochs * len(task.x_train)


def time_path(task: ImageClassificationTask, args: argparse.Namespace, vectorize: bool | str, chunk: int) -> dict:
    """Median round and local-training time of one engine path (vmap chunks, grouped twins of
    ``chunk`` clients or the loop), its peak memory and new global model."""
    device = torch.device(args.device)
    cfg = ExperimentConfig(
        seed=args.seed, federation=FederationConfig(num_clients=args.clients, clients_per_round=args.clients,
                                                    rounds=args.repeats + 1), local=LOCAL,
    )
    cfg.engine.device, cfg.engine.vectorize, cfg.engine.chunk_size = args.device, vectorize, chunk
    cfg.engine.group_size = chunk
    cfg.engine.workers = 1  # CPU runs (a check of this script) time one thread; CUDA ignores workers
    sim = Simulation(cfg, task)
    g = sim.initial_global()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    rounds, trains, record, new_global = [], [], {}, g
    for r in range(1, args.repeats + 2):
        sync(device)
        start = time.perf_counter()
        plan = sim.plan(r)
        local_vecs, info = sim.local_models(r, g, plan)
        sync(device)
        trained = time.perf_counter()
        new_global, record = sim.finish_round(r, g, plan, local_vecs, start, sim.clients_path, info)
        if r > 1:  # round 1 warms up kernels and allocators
            trains.append(trained - start)
            rounds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {
        "path": {True: f"vmap chunk {chunk}", "grouped": f"grouped {chunk}"}.get(vectorize, "per-client loop"),
        "ran": record["path"],
        "s_per_round": statistics.median(rounds),
        "train_s_per_round": statistics.median(trains),
        "clients_per_s": args.clients / statistics.median(trains),
        "peak_gpu_mem_gib": peak / 2**30 if peak is not None else None,
        "main_accuracy": record["main_accuracy"],
        "attack_success_rate": record["attack_success_rate"],
        "_global": new_global,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for gpu_fed_round.json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--clients", type=int, default=100, help="n = m: clients, all sampled")
    parser.add_argument("--chunks", type=int, nargs="+", default=[10, 25, 50, 100], help="vmap chunk sizes")
    parser.add_argument("--groups", type=int, nargs="*", default=[8, 50], help="grouped-twin sizes")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up")
    parser.add_argument("--matmul-n", type=int, default=8192, help="side of the square matmul benchmark")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    task = ImageClassificationTask(*mnist_tensors())
    samples = LOCAL.epochs * len(task.x_train)  # every client sampled: E passes over the training set
    flops = round_flops(task, LOCAL.epochs, device)
    peaks = {
        "fp32": matmul_flops(device, torch.float32, args.matmul_n),
        "tf32": matmul_flops(device, torch.float32, args.matmul_n, tf32=True) if device.type == "cuda" else None,
        "bf16": matmul_flops(device, torch.bfloat16, args.matmul_n),
    }
    print(json.dumps({"device": str(device), "matmul_flops_per_s": peaks, "round_flops": flops}), flush=True)
    rows = ([time_path(task, args, True, c) for c in args.chunks] + [time_path(task, args, "grouped", k) for k in args.groups]
            + [time_path(task, args, False, args.clients)])
    reference = rows[-1].pop("_global")
    for row in rows:
        g = row.pop("_global", reference)
        row["max_rel_diff_global_vs_loop"] = float((g - reference).norm() / reference.norm())
        row["achieved_flops_per_s"] = flops / row["train_s_per_round"]
        row["share_of_fp32_matmul"] = row["achieved_flops_per_s"] / peaks["fp32"]
        row["share_of_bf16_matmul"] = row["achieved_flops_per_s"] / peaks["bf16"]
        print(json.dumps(row), flush=True)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "clients": args.clients, "sampled": args.clients, "local": dataclasses.asdict(LOCAL), "seed": args.seed,
        "flops_per_sample_step": flops / samples, "samples_per_round": samples, "round_flops": flops,
        "matmul_flops_per_s": peaks, "matmul_n": args.matmul_n,
        "rows": rows,
        "loop_over_best_batched": rows[-1]["s_per_round"] / min(r["s_per_round"] for r in rows[:-1]),
    }
    (args.out / "gpu_fed_round.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
