"""``poisonlab fed grid``: one run per attack × defense, one table, bad cells rejected up front."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from labcore.errors import InputError
from poisonlab.commands.fed import fed
from poisonlab.grid import run_grid

BASE = {
    "data": {"name": "digits"},
    "task": {"target_label": 2, "trigger_size": 3},
    "federation": {"num_clients": 4, "clients_per_round": 2, "rounds": 2, "server_lr": 2.0},
    "local": {"epochs": 1, "lr": 0.1, "batch_size": 20},
}


def write_grid(tmp_path: Path, defenses: dict) -> Path:
    grid = {
        "base": BASE,
        "attacks": {"none": {"name": "none"},
                    "replace": {"name": "model_replacement", "rounds": [2], "params": {"epochs": 1}}},
        "defenses": defenses,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def test_grid_table_and_report(tmp_path: Path, data_dir):
    path = write_grid(tmp_path, {"median": {"name": "median"}})
    result = CliRunner().invoke(fed, ["grid", str(path), "--out", str(tmp_path / "g"), "--seed", "1"])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "g" / "metrics.json").read_text())["cells"]
    assert [(r["attack"], r["defense"]) for r in rows] == [("none", "median"), ("replace", "median")]
    clean, attacked = rows
    assert attacked["clean ASR"] == clean["final ASR"]
    assert clean["lifespan"] is None and attacked["lifespan"] == 0  # attack in the last round
    assert attacked["ASR after last attack"] == attacked["final ASR"]
    cells = tmp_path / "g" / "cells"
    assert sorted(p.name for p in cells.iterdir()) == ["none__median", "replace__median"]
    for cell in cells.iterdir():
        assert yaml.safe_load((cell / "config.yaml").read_text())["seed"] == 1
    html = (tmp_path / "g" / "report.html").read_text()
    assert "Attack × defense grid" in html and html.count("<img") >= 3


def test_grid_yaml_of_a_run_reruns_it(tmp_path: Path, data_dir):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(BASE))
    grid = {"base_config": "base.yaml", "attacks": {"none": {"name": "none"}}, "defenses": {"median": {"name": "median"}}}
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "grid.yaml").write_text(yaml.safe_dump({**grid, "base_config": "../base.yaml"}))
    first = CliRunner().invoke(fed, ["grid", str(tmp_path / "cfg" / "grid.yaml"), "--out", str(tmp_path / "a"), "--seed", "3"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(fed, ["grid", "--config", str(tmp_path / "a" / "grid.yaml"), "--out", str(tmp_path / "b")])
    assert again.exit_code == 0, again.output
    rows = [[{k: v for k, v in row.items() if k != "s/round"} for row in json.loads((tmp_path / run / "metrics.json").read_text())["cells"]]
            for run in ("a", "b")]  # the same metrics up to wall times
    assert rows[0] == rows[1] and rows[0][0]["final MTA"] > 0
    assert yaml.safe_load((tmp_path / "b" / "cells" / "none__median" / "config.yaml").read_text())["seed"] == 3


def test_bad_defense_fails_before_any_output(tmp_path: Path, data_dir):
    path = write_grid(tmp_path, {"fedavg": {"name": "mean"}, "oops": {"name": "krumm"}})
    with pytest.raises(InputError, match="unknown aggregator 'krumm'"):
        run_grid(path, tmp_path / "g")
    assert not (tmp_path / "g").exists() and not (tmp_path / "g.partial").exists()
