"""Attack × defense grid: one federated run per cell, one HTML table (MTA, ASR, backdoor lifespan)
with plots. Cells are normal run directories under ``<out>/cells/<attack>__<defense>`` (:func:`check_names`); an
interrupted grid resumes, skipping finished cells and resuming the interrupted one."""

from __future__ import annotations

import copy
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

from fedharness.config import ExperimentConfig
from fedharness.simulation import build_methods
from labcore.cores import available_core_ids, resolve_workers
from labcore.errors import InputError
from poisonlab.config import from_dict, load_yaml
from poisonlab.fed_report import add_runs, backdoor_lifespan, summarize
from poisonlab.fed_run import build_task, run_experiment
from poisonlab.report import Report
from poisonlab.runs import read_jsonl, staged_output, staging_path, write_json, write_yaml

NO_ATTACK = "none"
CELL_SEPARATOR = "__"


@dataclass
class GridConfig:
    """``base`` (an experiment mapping, or ``base_config``: a YAML path relative to the grid file),
    then named attacks (``attack:`` mappings) and named defenses (``aggregator:`` mappings).
    ``workers`` cells run at once, each in its own process on its own core (null: one per core)."""

    attacks: dict[str, dict[str, Any]]
    defenses: dict[str, dict[str, Any]]
    base: dict[str, Any] = field(default_factory=dict)
    base_config: str | None = None
    workers: int | None = None


def load_grid(path: Path, seed: int | None) -> tuple[GridConfig, dict[str, ExperimentConfig]]:
    """Parse the grid and build (and validate) every cell's experiment before anything runs.

    The returned grid is resolved: ``base_config`` merged into ``base`` and ``seed`` (when given) set
    there, so written into a run directory it reruns the same cells from anywhere."""
    grid = from_dict(GridConfig, load_yaml(path), source=str(path))
    if not grid.attacks or not grid.defenses:
        raise InputError(f"{path}: attacks and defenses must each name at least one entry")
    if grid.workers is not None and grid.workers < 1:
        raise InputError(f"{path}: workers must be >= 1 (or null for one per core), got {grid.workers}")
    check_names(path, grid)
    if grid.base_config is not None:
        grid.base = {**load_yaml(Path(path).parent / grid.base_config), **grid.base}
        grid.base_config = None
    if seed is not None:
        grid.base["seed"] = seed
    cells: dict[str, ExperimentConfig] = {}
    for attack_name, attack in grid.attacks.items():
        for defense_name, defense in grid.defenses.items():
            mapping = {**copy.deepcopy(grid.base), "attack": copy.deepcopy(attack), "aggregator": copy.deepcopy(defense)}
            cfg = from_dict(ExperimentConfig, mapping, source=f"{path} cell {attack_name}/{defense_name}")
            cfg.validate()
            build_methods(cfg)  # refuses a bad name or parameter before the task loads
            cells[cell_name(attack_name, defense_name)] = cfg
    return grid, cells


def run_cell(cfg: ExperimentConfig, cell_dir: Path) -> None:
    run_experiment(cfg, cell_dir, resume=staging_path(cell_dir).exists(), progress=False)


def run_cells(todo: list[tuple[ExperimentConfig, Path]], workers: int, desc: str) -> None:
    """Run the cells ``workers`` at a time. Each worker is a fresh process pinned to one core, so a
    cell's engine (``engine.workers`` null) trains on one thread; results match a sequential grid."""
    bar = tqdm(total=len(todo), desc=desc, unit="cell")
    workers = min(workers, len(todo))
    if workers <= 1:
        for cfg, cell_dir in todo:
            run_cell(cfg, cell_dir)
            bar.update()
    else:
        ctx = multiprocessing.get_context("spawn")
        cores = ctx.Queue()
        for core in sorted(available_core_ids())[:workers]:
            cores.put(core)
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=pin_to_core, initargs=(cores,)) as pool:
            for future in as_completed([pool.submit(run_cell, cfg, d) for cfg, d in todo]):
                future.result()
                bar.update()
    bar.close()


def pin_to_core(cores) -> None:
    """Pool initializer: bind this worker process, and its torch operations, to the next free core."""
    core = cores.get()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)


def cell_name(attack: str, defense: str) -> str:
    """The folder of a cell under ``cells/``: ``<attack>__<defense>``."""
    return f"{attack}{CELL_SEPARATOR}{defense}"


def check_names(path: Path, grid: GridConfig) -> None:
    """Attack and defense names that make cell folders: not empty, no path separator, ``..``, NUL or
    :data:`CELL_SEPARATOR`, and no two cells sharing a folder (``a_ × b`` and ``a × _b`` both make
    ``a___b``; names that differ only in case share one on a case-insensitive file system)."""
    for kind, names in (("attack", grid.attacks), ("defense", grid.defenses)):
        for name in names:
            bad = next((b for b in ("/", "\\", "..", "\0", CELL_SEPARATOR) if b in str(name)), None)
            if not str(name) or bad:
                problem = f"contains {bad!r}" if bad else "is empty"
                raise InputError(f"{path}: {kind} name {name!r} {problem}; name it with letters, digits and '-' "
                                 f"(it becomes the folder cells/<attack>{CELL_SEPARATOR}<defense>)")
    seen: dict[str, str] = {}
    for attack in grid.attacks:
        for defense in grid.defenses:
            folder = cell_name(attack, defense)
            other = seen.setdefault(folder.casefold(), f"{attack} × {defense}")
            if other != f"{attack} × {defense}":
                raise InputError(f"{path}: cells {other} and {attack} × {defense} share the folder cells/{folder} "
                                 "(names differing only in case or by a leading or trailing '_'); rename one")


def run_grid(path: Path, out: Path, *, seed: int | None = None, resume: bool = False) -> list[dict]:
    """Run every cell of the grid at ``path`` into ``out``; returns the table rows."""
    grid, cells = load_grid(path, seed)
    build_task(next(iter(cells.values())))
    with staged_output(out, resume=resume) as stage:
        write_yaml(stage / "grid.yaml", grid)
        todo = [(cfg, stage / "cells" / name) for name, cfg in cells.items() if not (stage / "cells" / name).exists()]
        run_cells(todo, resolve_workers(grid.workers), out.name)
        records = {name: read_jsonl(stage / "cells" / name / "rounds.jsonl") for name in cells}
        rows = grid_rows(grid, cells, records)
        write_json(stage / "metrics.json", {"cells": rows})
        grid_report(grid, rows, records, title=f"Attack × defense grid {out.name}").save(stage / "report.html")
    return rows


def grid_rows(grid: GridConfig, cells: dict[str, ExperimentConfig], records: dict[str, list[dict]]) -> list[dict]:
    """One row per cell. ``clean ASR``: the same defense's final ASR without an attack when the grid
    has a ``none`` attack, else the cell's own ASR in the round before its first attack."""
    rows = []
    for attack in grid.attacks:
        for defense in grid.defenses:
            name = cell_name(attack, defense)
            summary = summarize(cells[name], records[name])
            clean = records.get(cell_name(NO_ATTACK, defense))
            after = [r for r in records[name] if r["attacked"]]
            last_attack = after[-1]["round"] if after else None
            rows.append({
                "attack": attack,
                "defense": defense,
                "final MTA": summary["final_main_accuracy"],
                "final ASR": summary["final_attack_success_rate"],
                "ASR after last attack": after[-1]["attack_success_rate"] if after else None,
                "max ASR from last attack": max(
                    (r["attack_success_rate"] for r in records[name] if last_attack and r["round"] >= last_attack),
                    default=None),
                "clean ASR": clean[-1]["attack_success_rate"] if clean else pre_attack_asr(records[name]),
                "lifespan": backdoor_lifespan(records[name]),
                "rejected non-finite": summary["rejected_nonfinite"],
                "s/round": summary["mean_round_time_s"],
            })
    return rows


def pre_attack_asr(records: list[dict]) -> float | None:
    """ASR in the round before the first attack round (None without an attack or a round before it)."""
    first = next((r["round"] for r in records if r["attacked"]), None)
    before = [r for r in records if first is not None and r["round"] == first - 1]
    return before[0]["attack_success_rate"] if before else None


def heatmap(rows: list[dict], key: str, attacks: list[str], defenses: list[str]) -> plt.Figure:
    values = np.array([[next(r[key] for r in rows if r["attack"] == a and r["defense"] == d) or 0.0
                        for d in defenses] for a in attacks], dtype=float)
    fig, ax = plt.subplots(figsize=(1.3 * len(defenses) + 2, 0.6 * len(attacks) + 1.5))
    im = ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(defenses)), defenses, rotation=30, ha="right")
    ax.set_yticks(range(len(attacks)), attacks)
    for i in range(len(attacks)):
        for j in range(len(defenses)):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", color="white" if values[i, j] < 0.6 else "black")
    ax.set_title(key)
    fig.colorbar(im, ax=ax)
    return fig


def grid_report(grid: GridConfig, rows: list[dict], records: dict[str, list[dict]], title: str) -> Report:
    report = Report(title)
    attacks, defenses = list(grid.attacks), list(grid.defenses)
    report.paragraph(
        "One federated run per (attack, defense). ASR excludes test images whose true label is the target; "
        "clean ASR is the same defense's final ASR without an attack (or, without a 'none' row, the ASR "
        "in the round before the attack); lifespan counts the rounds after the "
        "last attack round whose ASR stays ≥ 0.5."
    )
    report.table(rows, "Attack × defense grid")
    report.figure(heatmap(rows, "final ASR", attacks, defenses), "Final attack success rate.")
    report.figure(heatmap(rows, "final MTA", attacks, defenses), "Final main-task accuracy.")
    for attack in attacks:
        report.heading(f"Attack: {attack}", level=3)
        add_runs(report, {d: records[cell_name(attack, d)] for d in defenses})
    return report
