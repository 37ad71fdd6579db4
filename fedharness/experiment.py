"""A federated experiment end to end, the one round loop every front end runs.

``fedharness.config.load_experiment(path, seed)`` reads an ``ExperimentConfig`` YAML strictly (torch-free);
``build_task(cfg)`` finds
the builder of ``cfg.task.name`` among the task registries that packages declare under the entry-point
group ``fedharness.tasks`` (each a mapping name → ``(ExperimentConfig) -> Task``; poisonlab declares
``poisonlab.fed_run:TASKS``), so fedharness names no package above it; ``run_rounds(sim, folder)``
runs (or resumes) the rounds into ``folder``: ``rounds.jsonl`` (one record per round) and
``checkpoints/`` (the global vector and aggregator state after the last finished round).
``poisonlab fed run``, ``poisonlab nlp fed`` and the Flower App (``engines.flower_app``) all call it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from tqdm.auto import tqdm

from fedharness import aggregators, checkpoint
from fedharness.config import ExperimentConfig
from fedharness.simulation import Simulation
from fedharness.tasks import Task
from labcore.errors import InputError, first_line

ENTRY_POINT_GROUP = "fedharness.tasks"
Rounds = Callable[[Simulation, torch.Tensor, int], Iterator[tuple[torch.Tensor, dict]]]


def task_builders() -> dict[str, Callable[[ExperimentConfig], Task]]:
    """Every registered task builder by name (the registries of the ``fedharness.tasks`` entry points)."""
    builders: dict[str, Callable[[ExperimentConfig], Task]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        registry: Mapping[str, Callable[[ExperimentConfig], Task]] = ep.load()
        builders.update(registry)
    return builders


def build_task(cfg: ExperimentConfig, builders: Mapping[str, Callable[[ExperimentConfig], Task]] | None = None) -> Task:
    """The task named by ``cfg.task.name``, from ``builders`` (default: every registered builder)."""
    builders = task_builders() if builders is None else builders
    if not builders:
        raise InputError(f"no federated task is registered (no installed package declares the entry-point group "
                         f"{ENTRY_POINT_GROUP}); install the project with `pip install -e .` so that its tasks register")
    if cfg.task.name not in builders:
        raise InputError(f"task.name {cfg.task.name!r} is unknown; use one of {', '.join(sorted(builders))}")
    return builders[cfg.task.name](cfg)


def engine_rounds(sim: Simulation, global_vec: torch.Tensor, first: int) -> Iterator[tuple[torch.Tensor, dict]]:
    """The configured engine's round iterator (Flower is imported only when asked for)."""
    if sim.cfg.engine.name == "flower":
        from fedharness.engines.flower import rounds as flower_rounds

        return flower_rounds(sim, global_vec, first)
    return sim.rounds(global_vec, first)


@dataclass
class RunResult:
    """Every round's record (resumed ones included) and the final global vector."""

    records: list[dict]
    global_vec: torch.Tensor


def run_rounds(sim: Simulation, folder: Path, *, resume: bool = False, rounds: Rounds = engine_rounds,
               progress: bool = True, desc: str = "rounds") -> RunResult:
    """Rounds 1…R of ``sim`` (with ``resume``: from the round after ``folder/checkpoints``' last), each record
    appended to ``folder/rounds.jsonl`` and checkpointed as soon as the round ends. Each round's randomness
    derives from (seed, round), so a resumed run equals an uninterrupted one."""
    folder = Path(folder)
    log, ckpt_dir = folder / "rounds.jsonl", folder / "checkpoints"
    state = checkpoint.load(ckpt_dir) if resume else None
    if state is None:
        first, global_vec, records = 1, sim.initial_global(), []
    else:
        done, global_vec, aggregator_state = state
        _check_resumable(ckpt_dir, done, sim.cfg.federation.rounds)
        aggregators.load_state_dict(sim.aggregator, aggregator_state)
        first = done + 1
        records = [r for r in _read_jsonl(log) if r["round"] <= done]
    folder.mkdir(parents=True, exist_ok=True)
    tmp = log.with_name(log.name + ".tmp")
    tmp.write_text("".join(_line(r) for r in records), encoding="utf-8")
    os.replace(tmp, log)
    bar = tqdm(total=sim.cfg.federation.rounds, initial=first - 1, desc=desc, unit="round", disable=not progress)
    for global_vec, record in rounds(sim, global_vec, first):
        with log.open("a", encoding="utf-8") as f:
            f.write(_line(record))
        checkpoint.save(ckpt_dir, record["round"], global_vec, aggregators.state_dict(sim.aggregator))
        records.append(record)
        bar.set_postfix(mta=f"{record['main_accuracy']:.3f}", asr=f"{record['attack_success_rate']:.3f}")
        bar.update()
    bar.close()
    return RunResult(records, global_vec)


def _check_resumable(ckpt_dir: Path, done: int, rounds: int) -> None:
    """A checkpoint past the configured rounds belongs to another run (or was edited)."""
    if done > rounds:
        raise InputError(f"checkpoint {ckpt_dir / 'state.json'} records round {done}, past federation.rounds ({rounds}); "
                         f"delete {ckpt_dir.parent} and run again without --resume")


def _line(record: dict) -> str:
    return json.dumps(record, default=_plain) + "\n"


def _plain(value: Any) -> Any:
    """Tensors and numpy values in a record as JSON values."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _read_jsonl(path: Path) -> list[dict]:
    """The round records of a run being resumed; InputError naming the file when it is damaged."""
    if not path.exists():
        return []
    try:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not all(isinstance(r, dict) and type(r.get("round")) is int for r in records):
            raise ValueError("a line is not a round record")
        return records
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path} is damaged ({type(exc).__name__}: {first_line(exc)}); delete {path.parent} "
                         "and run again without --resume") from None
