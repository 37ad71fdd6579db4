"""`fed run` and `fed grid` given bad settings, through the CLI: exit code 2, one line on stderr naming the
problem and the fix, no output folder and no ``.partial`` left (a resumed run's own folder is kept)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import poisonlab.cli  # noqa: F401  (sets the CLI's environment before the libraries load)

BASE = {
    "seed": "0",
    "data": "{name: digits}",
    "federation": "{num_clients: 4, clients_per_round: 2, rounds: 1}",
    "local": "{epochs: 1, lr: 0.1, batch_size: 32}",
}
GRID_BASE = "base: {seed: 0, data: {name: digits}, federation: {num_clients: 4, clients_per_round: 2, rounds: 1}}\n"


def write_config(folder: Path, name: str = "g.yaml", **sections: str) -> Path:
    """The reviewer's base YAML ``G`` with ``sections`` replacing or adding top-level keys."""
    path = folder / name
    path.write_text("".join(f"{k}: {v}\n" for k, v in {**BASE, **sections}.items()), encoding="utf-8")
    return path


def assert_refused(code: int, captured, message: str, *leftovers: Path) -> None:
    """Exit 2, one stderr line holding ``message``, none of ``leftovers`` on disk."""
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1, captured.err
    assert message in lines[0]
    assert not any(p.exists() for p in leftovers)


@pytest.mark.parametrize("sections, message", [
    ({"federation": "{num_clients: 4, clients_per_round: 0, rounds: 1}"},
     "federation.clients_per_round (m=0) must be between 1 and federation.num_clients (n=4)"),
    ({"task": "{trigger_size: -3}"}, "task.trigger_size (-3) must be >= 1"),
    ({"task": "{trigger_size: 0}"}, "task.trigger_size (0) must be >= 1"),
    ({"task": "{trigger_size: 9}"}, "task.trigger_size 9 does not fit the 8×8 images of digits; pick one of 1..8"),
    ({"task": "{backdoor: semantic, semantic_source: 20}"},
     "task.semantic_source 20 is not a class of digits; pick one of 0..9"),
    ({"task": "{poison_fraction: .nan}", "attack": "{name: backdoor, every: 1}"},
     "task.poison_fraction (nan) must be in (0, 1]"),
    ({"task": "{poison_fraction: 1.5}"}, "task.poison_fraction (1.5) must be in (0, 1]"),
    ({"task": "{poison_fraction: -0.5}"}, "task.poison_fraction (-0.5) must be in (0, 1]"),
    ({"federation": "{num_clients: 4, clients_per_round: 2, rounds: 1, partition: dirichlet, dirichlet_alpha: 0}"},
     "federation.dirichlet_alpha (0) must be a finite number > 0"),
    ({"federation": "{num_clients: 4, clients_per_round: 2, rounds: 1, partition: dirichlet, dirichlet_alpha: .nan}"},
     "federation.dirichlet_alpha (nan) must be a finite number > 0"),
    ({"local": "{epochs: 1, lr: .inf, batch_size: 32}"}, "local.lr (inf) must be a finite number > 0"),
    ({"federation": "{num_clients: 4, clients_per_round: 2, rounds: 1, server_lr: .inf}"},
     "federation.server_lr (inf) must be a finite number > 0"),
    ({"data": "{name: digits, path: /nonexistent}"},
     "data.path: not read by data set digits (it is built in); drop it, or name the data set that lives there"),
    ({"engine": "{chunk_size: 0}"}, "engine.chunk_size must be >= 1"),
    ({"attack": "{name: backdoor, every: 1, start: 0}"}, "attack.start (0) must lie in 1..1"),
    ({"attack": "{name: backdoor, every: 1, start: -5}"}, "attack.start (-5) must lie in 1..1"),
    ({"aggregator": "{name: krum, params: {f: 5}}"}, "krum with f=5 needs at least 2f + 3 = 13 updates per round, got 2"),
    ({"aggregator": "{name: bucketing}"}, "bucketing is a pre-aggregator, not a defense on its own"),
    ({"local": "{epochs: 1000000000, lr: 0.1, batch_size: 32}"}, "local.epochs (1000000000) must be at most 10000"),
    ({"attack": "{name: model_replacement, every: 1, params: {epochs: -1}}"},
     "attack model_replacement needs epochs in 1..10000"),
    ({"attack": "{name: model_replacement, every: 1, params: {lr: .nan}}"}, "lr=nan; fix attack.params"),
    ({"attack": "{name: gaussian, every: 1, params: {sigma: -1}}"}, "attack gaussian needs sigma > 0 (.inf for non-finite updates), got -1"),
    ({"attack": "{name: ipm, every: 1, params: {eps: .nan}}"}, "attack ipm needs a finite eps > 0, got nan"),
    ({"aggregator": "{name: weak_dp, params: {sigma: .nan}}"}, "weak_dp needs a finite rho > 0 and sigma >= 0"),
    ({"aggregator": "{name: flame, params: {noise_lambda: -1}}"}, "flame noise_lambda must be a finite number >= 0"),
    ({"aggregator": "{name: foolsgold, params: {kappa: .nan}}"}, "foolsgold kappa must be a finite number > 0"),
    ({"attack": "{name: backdoor, num_attackers: 0, every: 1}"},
     "attack.num_attackers is 0, so attack backdoor never runs"),
])
def test_fed_run_refuses_a_bad_setting(cli, tmp_path, data_dir, sections, message):
    out = tmp_path / "o"
    code, captured = cli("fed", "run", write_config(tmp_path, **sections), "--out", out)
    assert_refused(code, captured, message, out, tmp_path / "o.partial")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir) -> tuple[Path, Path]:
    """(config, run folder) of a finished two-round run, to copy into damaged ``.partial`` folders."""
    from fedharness.config import load_experiment
    from poisonlab.fed_run import run_experiment

    folder = tmp_path_factory.mktemp("finished")
    config = write_config(folder, federation="{num_clients: 4, clients_per_round: 2, rounds: 2}")
    run_experiment(load_experiment(config), folder / "run", progress=False)
    return config, folder / "run"


@pytest.mark.parametrize("state, message", [
    ("garbage", "checkpoint file {p}/checkpoints/state.json is damaged (JSONDecodeError: Expecting value"),
    ('{"round": 99}', "checkpoint {p}/checkpoints/state.json records round 99, past federation.rounds (2); "
                      "delete {p} and run again without --resume"),
])
def test_fed_run_resume_refuses_a_damaged_or_foreign_checkpoint(cli, tmp_path, finished_run, state, message):
    config, run = finished_run
    partial = tmp_path / "r2.partial"
    shutil.copytree(run, partial)
    (partial / "checkpoints" / "state.json").write_text(state)
    code, captured = cli("fed", "run", config, "--out", tmp_path / "r2", "--resume")
    assert_refused(code, captured, message.format(p=partial), tmp_path / "r2")
    assert (partial / "checkpoints" / "state.json").read_text() == state  # the user's folder is kept as it was


@pytest.mark.parametrize("attacks, defenses, message", [
    ('{"../../evil": {name: none}}', "{fedavg: {name: mean}}", "attack name '../../evil' contains '/'"),
    ('{"": {name: none}}', "{fedavg: {name: mean}}", "attack name '' is empty"),
    ('{"x\\\\y": {name: none}}', "{fedavg: {name: mean}}", "attack name 'x\\\\y' contains '\\\\'"),
    ("{a..b: {name: none}}", "{fedavg: {name: mean}}", "attack name 'a..b' contains '..'"),
    ("{a__b: {name: none}, a: {name: none}}", "{c: {name: mean}, b__c: {name: mean}}", "attack name 'a__b' contains '__'"),
    ("{a: {name: none}}", "{b__c: {name: mean}}", "defense name 'b__c' contains '__'"),
    ("{a_: {name: none}, a: {name: none}}", "{b: {name: mean}, _b: {name: mean}}",
     "cells a_ × b and a × _b share the folder cells/a___b"),
    ("{A: {name: none}, a: {name: none}}", "{b: {name: mean}}", "cells A × b and a × b share the folder cells/a__b"),
])
def test_fed_grid_refuses_names_that_make_no_cell_folder_of_their_own(cli, tmp_path, data_dir, attacks, defenses, message):
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"{GRID_BASE}attacks: {attacks}\ndefenses: {defenses}\n", encoding="utf-8")
    out = tmp_path / "sub" / "deeper" / "o"
    code, captured = cli("fed", "grid", grid, "--out", out)
    assert_refused(code, captured, message, tmp_path / "sub", tmp_path / "evil", tmp_path.parent / "evil")
