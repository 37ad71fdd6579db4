"""``fed grid`` runs cells in parallel processes (``workers``); the table must equal a sequential grid's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from labcore.errors import InputError
from poisonlab.grid import run_grid


def _grid(tmp_path: Path, workers: int) -> Path:
    grid = {
        "base": {"data": {"name": "digits"}, "federation": {"num_clients": 4, "clients_per_round": 2, "rounds": 2},
                 "local": {"epochs": 1, "lr": 0.1, "batch_size": 20}},
        "attacks": {"replace": {"name": "model_replacement", "rounds": [2], "params": {"epochs": 1}}},
        "defenses": {"mean": {"name": "mean"}, "median": {"name": "median"}},
        "workers": workers,
    }
    path = tmp_path / f"grid{workers}.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def test_parallel_cells_give_the_sequential_table(tmp_path: Path, data_dir):
    tables = []
    for workers in (1, 2):
        run_grid(_grid(tmp_path, workers), tmp_path / f"g{workers}", seed=3)
        rows = json.loads((tmp_path / f"g{workers}" / "metrics.json").read_text())["cells"]
        tables.append([{k: v for k, v in r.items() if k != "s/round"} for r in rows])
    assert tables[0] == tables[1]
    assert {r["defense"] for r in tables[0]} == {"mean", "median"}


def test_grid_workers_must_be_positive(tmp_path: Path, data_dir):
    with pytest.raises(InputError, match="workers must be >= 1"):
        run_grid(_grid(tmp_path, 0), tmp_path / "g")
    assert not (tmp_path / "g").exists()
