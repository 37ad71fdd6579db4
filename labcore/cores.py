"""The CPU cores a process may use, and running torch on one intra-op thread per worker thread."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch

from labcore.errors import InputError


def available_core_ids() -> set[int]:
    """The ids of the CPU cores this process may run on (its affinity mask, not the machine's cores)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def available_cores() -> int:
    """How many CPU cores this process may run on."""
    return len(available_core_ids())


def resolve_workers(workers: int | None, name: str = "workers") -> int:
    """A worker count: None means one per available core; ``name`` is the setting an error names."""
    if workers is None:
        return available_cores()
    if workers < 1:
        raise InputError(f"{name} must be >= 1 (or null for one per core), got {workers}")
    return workers


@contextmanager
def single_intra_op_thread() -> Iterator[None]:
    """Torch operations on one thread each while the block runs (threads started inside inherit it)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
