"""In-process engine: the sampled clients train in parallel worker threads, in grouped twins of the
model (:mod:`fedharness.engines.grouped`), one by one, or in chunks under ``torch.func.vmap``.

Path choice (``vectorize``): ``grouped`` trains ``group_size`` clients in one autograd graph of the
model's grouped twin (grouped convolution, GroupNorm with K times the groups, batched linear layers);
``false`` is the per-client loop, the arithmetic of Flower's ClientApps (one client per call);
``true`` is vmap; ``auto`` (the default) takes the grouped path on CPU and vmap on accelerators when
more than one client trains, else the loop. The grouped path computes the loop's numbers bit for bit
(each twin layer keeps a batched kernel only for input shapes where it equals the per-client call;
clients with equal batch sizes step together, without padding), so a run's local models, global
models and MTA/ASR do not depend on the path, the group size or the worker count (tested). A model
without a twin (BatchNorm, dropout, layers other than Conv2d/GroupNorm/Linear) or whose twin's losses
differ from the model's on its first use trains in the loop. vmap agrees with the loop to float
tolerance only (summation order; 1.8e-2 relative on 10 clients × 160 steps) and was slower than the
loop on CPU (1 thread: 10 clients, batch 10: 2.4 s vs 1.0 s; 100 clients, batch 10: 9.3 s vs 10.4 s).
Measured side by side (100 MNIST clients, E=2, batch 10, 2 workers, load 3.3–4.1, median s/round
over 3 rounds after a warm-up, ``scripts/bench_fed_round.py``): loop 13.6, grouped K=8 9.4, K=16 8.3,
K=25 8.1, K=50 8.4, every path's global model equal to the loop's.

``device`` places the local training (parameters, batches) on e.g. ``cuda``; the local models come
back to the host, where the server rule and the aggregators run.

On CPU, ``workers`` threads share the data and the global vector and train the jobs (one client, one
group of ``group_size`` clients, or one fixed vmap chunk) while every torch operation runs on one
intra-op thread. A job's arithmetic never depends on which worker runs it or on how many there are,
so the local models are bit-identical for any ``workers``; torch kernels release the GIL, so the
threads use separate cores.
"""

from __future__ import annotations

import copy
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Callable, Literal

import torch
from torch import nn
from torch.func import grad, vmap

from labcore.cores import resolve_workers, single_intra_op_thread
from labcore.errors import InputError
from fedharness.config import EngineConfig
from fedharness.local_training import (
    Batch,
    LocalConfig,
    PerSampleLoss,
    batch_schedule,
    masked_mean_loss,
    module_state,
    num_samples,
    sgd_steps,
)
from fedharness.engines.grouped import train_group, verified_twin
from fedharness.params import split_vector


def resolve_device(name: str) -> torch.device:
    """``engine.device``: ``auto`` (CUDA when torch sees one, else CPU) or any torch device name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"engine.device {name!r} is not a torch device; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"engine.device is {name!r} but torch sees no CUDA device; use cpu or auto")
    return device


@dataclass
class InProcessEngine:
    """Trains a list of clients from one global vector and returns their local vectors (m, d)."""

    model: nn.Module
    names: list[str]
    per_sample_loss: PerSampleLoss
    vectorize: bool | Literal["auto", "grouped"] = EngineConfig.vectorize
    chunk_size: int = EngineConfig.chunk_size
    device: torch.device = torch.device(EngineConfig.device)
    workers: int | None = 1  # one thread unless asked (None: every available core, EngineConfig's choice)
    group_size: int = EngineConfig.group_size

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        self.workers = resolve_workers(self.workers, "engine.workers")
        self._models = [self.model]
        self._twins: list[nn.Module] | None = None  # None: not yet checked; []: the model has no usable twin
        self.last_path: str | None = None  # the path the latest ``train`` call took

    def uses_vmap(self, num_clients: int) -> bool:
        return self.vectorize is True or (self.vectorize == "auto" and num_clients > 1 and self.device.type != "cpu")

    def client_path(self, num_clients: int) -> str:
        """``vmap``, ``grouped`` or ``loop``: how ``train`` runs ``num_clients`` clients (before the
        grouped path's first-use check, which may send it back to the loop; ``last_path`` says
        which ran)."""
        if self.uses_vmap(num_clients):
            return "vmap"
        usable = self._twins is None or bool(self._twins)
        wanted = self.vectorize == "grouped" or (self.vectorize == "auto" and self.device.type == "cpu")
        return "grouped" if wanted and num_clients > 1 and usable else "loop"

    def train(
        self, global_vec: torch.Tensor, datasets: list[Batch], cfg: LocalConfig, seeds: list[int]
    ) -> torch.Tensor:
        """Local models of each client, flattened in ``names`` order, on the host (no rows for no clients:
        a round that samples only attackers)."""
        if not datasets:
            self.last_path = "none"
            return torch.zeros(0, global_vec.numel(), dtype=global_vec.dtype)
        schedules = [batch_schedule(num_samples(d), cfg, s) for d, s in zip(datasets, seeds)]
        global_vec = global_vec.to(self.device)
        datasets = [{k: v.to(self.device) for k, v in d.items()} for d in datasets]
        _, frozen = module_state(self.model, self.names)
        frozen = {k: v.to(self.device) for k, v in frozen.items()}
        path = self.client_path(len(datasets))
        if path == "grouped" and not self._twin_ready(global_vec, frozen, datasets):
            path = "loop"
        self.last_path = path
        order = list(range(len(datasets)))  # the clients in the order the jobs return them
        if path == "grouped":
            jobs, order = self._group_jobs(global_vec, frozen, datasets, schedules, cfg.lr)
        elif path == "loop":
            jobs = [partial(self._train_one, global_vec, frozen, d, sch, cfg.lr) for d, sch in zip(datasets, schedules)]
        else:
            jobs = [partial(self._train_chunk, global_vec, frozen, datasets[i : i + self.chunk_size],
                          schedules[i : i + self.chunk_size], cfg)
                    for i in range(0, len(datasets), self.chunk_size)]
        locals_ = self._run(jobs, self._twins if path == "grouped" else self._models)
        rows = torch.cat([v.reshape(-1, global_vec.numel()) for v in locals_]).cpu()
        return rows[torch.argsort(torch.tensor(order, dtype=torch.long))]

    def _twin_ready(self, global_vec: torch.Tensor, frozen: dict[str, torch.Tensor], datasets: list[Batch]) -> bool:
        """Build and check the grouped twin once, on the first client with data (False: keep the loop)."""
        if self._twins is None:
            sample = next((d for d in datasets if num_samples(d)), None)
            if sample is None:
                return False
            twin = verified_twin(self.model, self.per_sample_loss, frozen,
                                 split_vector(global_vec, self.model, self.names), sample)
            self._twins = [twin] if twin is not None else []
        return bool(self._twins)

    def _group_jobs(
        self, global_vec: torch.Tensor, frozen: dict[str, torch.Tensor], datasets: list[Batch],
        schedules: list[list[torch.Tensor]], lr: float,
    ) -> tuple[list[Callable[[nn.Module], torch.Tensor]], list[int]]:
        """Groups of at most ``group_size`` clients, longest schedules first (clients in a group then
        run out of batches at about the same step), as many groups as makes every CPU worker train
        the same number of equal groups, and the client order of their rows. A client's local model
        is the loop's bit for bit in any group, so neither the grouping nor ``workers`` changes it."""
        params = split_vector(global_vec, self.model, self.names)
        order = sorted(range(len(datasets)), key=lambda c: (-len(schedules[c]), c))
        workers = self.workers if self.device.type == "cpu" else 1
        count = min(len(order), -(-len(order) // (self.group_size * workers)) * workers)
        bounds = [len(order) * i // count for i in range(count + 1)]
        groups = [order[a:b] for a, b in zip(bounds, bounds[1:])]
        jobs = [partial(self._train_group, params, frozen, [datasets[c] for c in g], [schedules[c] for c in g], lr)
                for g in groups]
        return jobs, order

    def _train_group(
        self, params: dict[str, torch.Tensor], frozen: dict[str, torch.Tensor], datasets: list[Batch],
        schedules: list[list[torch.Tensor]], lr: float, twin: nn.Module,
    ) -> torch.Tensor:
        out = train_group(twin, self.per_sample_loss, params, frozen, datasets, schedules, lr)
        return torch.cat([out[n].reshape(len(datasets), -1) for n in self.names], dim=1)

    def _run(self, jobs: list[Callable[[nn.Module], torch.Tensor]], models: list[nn.Module]) -> list[torch.Tensor]:
        """Results of ``jobs`` in order; on CPU across ``workers`` threads with one intra-op thread each.

        ``functional_call`` swaps tensors into the module it calls, so each thread holds its own
        replica of ``models[0]`` (the model or its grouped twin; its own tensors never enter: every
        parameter and buffer is passed in).
        """
        first = models[0]
        if self.device.type != "cpu":
            return [job(first) for job in jobs]
        with single_intra_op_thread():
            threads = min(self.workers, len(jobs))
            if threads <= 1:
                return [job(first) for job in jobs]
            replicas = queue.SimpleQueue()
            for model in self._replicas(models, threads):
                replicas.put(model)

            def call(job: Callable[[nn.Module], torch.Tensor]) -> torch.Tensor:
                model = replicas.get()
                try:
                    return job(model)
                finally:
                    replicas.put(model)

            with ThreadPoolExecutor(threads) as pool:
                return list(pool.map(call, jobs))

    @staticmethod
    def _replicas(models: list[nn.Module], count: int) -> list[nn.Module]:
        """The first ``count`` of ``models``, deep copies of its first appended (made once, kept)."""
        while len(models) < count:
            models.append(copy.deepcopy(models[0]))
        return models[:count]

    def _train_one(
        self, global_vec: torch.Tensor, frozen: dict[str, torch.Tensor], data: Batch, schedule: list[torch.Tensor], lr: float,
        model: nn.Module,
    ) -> torch.Tensor:
        params = {k: v.clone() for k, v in split_vector(global_vec, self.model, self.names).items()}
        params = sgd_steps(model, self.per_sample_loss, params, frozen, data, schedule, lr)
        return torch.cat([params[n].reshape(-1) for n in self.names])

    def _train_chunk(
        self, global_vec: torch.Tensor, frozen: dict[str, torch.Tensor], datasets: list[Batch],
        schedules: list[list[torch.Tensor]], cfg: LocalConfig, model: nn.Module,
    ) -> torch.Tensor:
        c, b = len(datasets), cfg.batch_size
        num_steps = max((len(s) for s in schedules), default=0)
        # (c, steps, b) sample indices and weights; padding points at sample 0 with weight 0.
        index = torch.zeros(c, num_steps, b, dtype=torch.long)
        weight = torch.zeros(c, num_steps, b)
        for i, sched in enumerate(schedules):
            for t, idx in enumerate(sched):
                index[i, t, : len(idx)] = idx
                weight[i, t, : len(idx)] = 1.0
        index, weight = index.to(self.device), weight.to(self.device)
        base = split_vector(global_vec, self.model, self.names)
        params = {k: v.unsqueeze(0).expand(c, *v.shape).clone() for k, v in base.items()}
        step_grad = vmap(grad(masked_mean_loss(model, self.per_sample_loss, frozen)))
        keys = list(datasets[0])
        for t in range(num_steps):
            batch = {k: torch.stack([d[k][index[i, t]] if num_samples(d) else _empty_like(datasets, k, b)
                                     for i, d in enumerate(datasets)]) for k in keys}
            g = step_grad(params, batch, weight[:, t])
            params = {k: p - cfg.lr * g[k] for k, p in params.items()}
        return torch.cat([params[n].reshape(c, -1) for n in self.names], dim=1)


def _empty_like(datasets: list[Batch], key: str, b: int) -> torch.Tensor:
    """Zero padding for a client with no samples, shaped like another client's batch."""
    ref = next(d[key] for d in datasets if num_samples(d))
    return torch.zeros(b, *ref.shape[1:], dtype=ref.dtype, device=ref.device)
