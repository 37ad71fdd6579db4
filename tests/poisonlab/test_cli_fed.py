import json

import pytest


GOOD = """
seed: 1
data: {name: digits}
federation: {num_clients: 6, clients_per_round: 3, rounds: 2}
local: {epochs: 1, lr: 0.1, batch_size: 32}
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD + "federation_typo: 3\n", "unknown key(s) federation_typo"),
        (GOOD.replace("rounds: 2", "rounds: two"), "'federation.rounds' has the wrong type"),
        (GOOD.replace("clients_per_round: 3", "clients_per_round: 9"), "clients_per_round (m=9) must be between 1"),
        (GOOD.replace("{name: digits}", "{name: mnist, path: /nonexistent/mnist}"), "dataset 'mnist' not found"),
        (GOOD.replace("{name: digits}", "{name: sst2}"), "not an image dataset"),
    ],
)
def test_bad_config_is_a_one_line_error_with_exit_2_and_no_output(cli, tmp_path, text, message):
    config = tmp_path / "exp.yaml"
    config.write_text(text)
    out = tmp_path / "run"
    code, captured = cli("fed", "run", config, "--out", out)
    assert code == 2
    err = captured.err.strip()
    assert message in err and "\n" not in err
    assert not out.exists() and not (tmp_path / "run.partial").exists()


def test_good_config_runs_and_refuses_to_overwrite(cli, tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text(GOOD)
    out = tmp_path / "run"
    code, captured = cli("fed", "run", config, "--out", out, "--seed", 3)
    assert code == 0
    assert {"config.yaml", "rounds.jsonl", "metrics.json", "report.html"} <= {p.name for p in out.iterdir()}
    assert "seed: 3" in (out / "config.yaml").read_text()
    code, captured = cli("fed", "run", config, "--out", out)
    assert code == 2 and "already exists" in captured.err


def test_every_shipped_experiment_config_loads_and_names_a_registered_task():
    from pathlib import Path

    from poisonlab.commands.fed import load_experiment
    from poisonlab.fed_run import TASKS

    configs = [p for p in sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")) if not p.name.startswith("grid_")]
    assert {"sst2_fed.yaml", "t2i_lora.yaml"} <= {p.name for p in configs}
    for path in configs:
        assert load_experiment(path, None).task.name in TASKS, path


@pytest.mark.parametrize(("task", "message"), [
    ("{name: t2i_lora, params: {base: /nonexistent, classifier: /nonexistent}}", "task.params.base '/nonexistent' is not a folder"),
    ("{name: t2i_lora, params: {rank: 0}}", "rank, eval_per_digit, eval_steps and train_limit must be >= 1"),
    ("{name: sst2_classification, params: {poisons: x, lora: 2}}", "unknown key(s) lora"),
    ("{name: sst2_classification}", "key 'poisons' is required"),
    ("{name: nope}", "task.name 'nope' is unknown; use one of"),
])
def test_bad_task_params_are_one_line_errors(cli, tmp_path, data_dir, task, message):
    config = tmp_path / "exp.yaml"
    config.write_text(GOOD.replace("{name: digits}", "{name: mnist}") + f"task: {task}\n")
    code, captured = cli("fed", "run", config, "--out", tmp_path / "run")
    assert code == 2 and message in captured.err and "\n" not in captured.err.strip()
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_a_run_config_reruns_through_the_config_option(cli, tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text(GOOD)
    assert cli("fed", "run", config, "--out", tmp_path / "a")[0] == 0
    assert cli("fed", "run", "--config", tmp_path / "a" / "config.yaml", "--out", tmp_path / "b")[0] == 0
    drop = lambda p: {k: v for k, v in json.loads(p.read_text()).items() if not k.endswith("_s")}
    assert drop(tmp_path / "b" / "metrics.json") == drop(tmp_path / "a" / "metrics.json")
    code, captured = cli("fed", "run", config, "--config", config, "--out", tmp_path / "c")
    assert code == 2 and "as CONFIG or as --config" in captured.err and not (tmp_path / "c").exists()
