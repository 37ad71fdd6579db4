"""``poisonlab unlearn … --config``: a run directory's config.yaml reruns the command with the same
metrics.json; options override the file; the CLI's defaults are the dataclasses'."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from poisonlab.cli import main

TIMING = {"wall_time_s", "seconds_mean"}


def run(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["poisonlab", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def metrics(folder: Path) -> dict:
    """metrics.json without its wall-clock timings."""
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in TIMING}
        return [strip(v) for v in obj] if isinstance(obj, list) else obj
    return strip(json.loads((folder / "metrics.json").read_text()))


def test_mark_and_train_rerun_from_their_config(monkeypatch, capsys, tmp_path, data_dir):
    mark = ["unlearn", "mark", "--data", "digits", "--owner", "1", "--owners", "4", "--key-file", tmp_path / "k.json"]
    assert run([*mark, "--out", tmp_path / "m"], monkeypatch, capsys)[0] == 0
    assert run(["unlearn", "mark", "--config", tmp_path / "m" / "config.yaml", "--out", tmp_path / "m2"],
               monkeypatch, capsys)[0] == 0
    assert metrics(tmp_path / "m2") == metrics(tmp_path / "m")
    train = ["unlearn", "train", "--dataset", tmp_path / "m", "--epochs", "2", "--seed", "3"]
    assert run([*train, "--out", tmp_path / "t"], monkeypatch, capsys)[0] == 0
    config = yaml.safe_load((tmp_path / "t" / "config.yaml").read_text())
    assert config["train"]["epochs"] == 2 and config["seed"] == 3
    assert run(["unlearn", "train", "--config", tmp_path / "t" / "config.yaml", "--out", tmp_path / "t2"],
               monkeypatch, capsys)[0] == 0
    assert metrics(tmp_path / "t2") == metrics(tmp_path / "t")
    # an option given beside --config overrides the file
    assert run(["unlearn", "train", "--config", tmp_path / "t" / "config.yaml", "--seed", "4", "--out", tmp_path / "t3"],
               monkeypatch, capsys)[0] == 0
    assert yaml.safe_load((tmp_path / "t3" / "config.yaml").read_text())["seed"] == 4


def test_bench_reruns_from_its_config_with_the_dataclass_defaults(monkeypatch, capsys, tmp_path, data_dir):
    from unlearning_verify.bench import BenchConfig

    code, err = run(["unlearn", "bench", "--data", "digits", "--families", "lsb", "--behaviours", "noop,retrain",
                     "--seeds", "1", "--seed", "2", "--epochs", "3", "--owners", "4", "--out", tmp_path / "a"],
                    monkeypatch, capsys)
    assert code == 0, err
    config = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert config["bench"]["seeds"] == [2] and config["bench"]["max_queries"] == BenchConfig().max_queries
    assert config["bench"]["alpha"] == BenchConfig().alpha and config["bench"]["train"]["epochs"] == 3
    code, err = run(["unlearn", "bench", "--config", tmp_path / "a" / "config.yaml", "--out", tmp_path / "b"],
                    monkeypatch, capsys)
    assert code == 0, err
    assert metrics(tmp_path / "b") == metrics(tmp_path / "a")


def test_bad_config_key_is_one_line(monkeypatch, capsys, tmp_path, data_dir):
    bad = tmp_path / "bad.yaml"
    bad.write_text("bench:\n  max_querys: 60\n")
    code, err = run(["unlearn", "bench", "--config", bad, "--out", tmp_path / "o"], monkeypatch, capsys)
    assert code == 2 and "max_querys" in err and err.count("\n") == 1 and not (tmp_path / "o").exists()


def test_bench_refuses_an_owner_outside_the_owners_before_any_output(monkeypatch, capsys, tmp_path, data_dir):
    config = tmp_path / "c.yaml"
    config.write_text("bench: {owner: 3, num_owners: 3}\n")
    for flags in (["--owners", "0"], ["--config", config]):
        code, err = run(["unlearn", "bench", "--data", "digits", *flags, "--seeds", "1", "--out", tmp_path / "o"], monkeypatch, capsys)
        assert code == 2 and "--owner must lie in 0..owners" in err and err.count("\n") == 1 and not (tmp_path / "o").exists()


def test_serve_refuses_a_port_out_of_range_before_loading(monkeypatch, capsys, tmp_path):
    code, err = run(["unlearn", "serve", "--model", tmp_path / "missing", "--port", 99999], monkeypatch, capsys)
    assert code == 2 and "--port must lie in 0..65535" in err and err.count("\n") == 1


def test_train_reports_loss_per_step_to_tensorboard(monkeypatch, capsys, tmp_path, data_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    mark = ["unlearn", "mark", "--data", "digits", "--owner", "0", "--owners", "4", "--key-file", tmp_path / "k.json"]
    assert run([*mark, "--out", tmp_path / "m"], monkeypatch, capsys)[0] == 0
    code, err = run(["unlearn", "train", "--dataset", tmp_path / "m", "--epochs", "1", "--batch-size", "256",
                     "--report-to", "tensorboard", "--out", tmp_path / "t"], monkeypatch, capsys)
    assert code == 0, err
    events = [EventAccumulator(str(p.parent)).Reload() for p in (tmp_path / "t" / "logs").rglob("events.out.*")]
    losses = [s.value for acc in events if "loss" in acc.Tags()["scalars"] for s in acc.Scalars("loss")]
    samples = len((tmp_path / "m" / "samples.jsonl").read_text().splitlines())
    assert len(losses) == -(-samples // 256) and all(v > 0 for v in losses)
    code, err = run(["unlearn", "train", "--dataset", tmp_path / "m", "--report-to", "wandb", "--out", tmp_path / "u"],
                    monkeypatch, capsys)
    assert code == 2 and "--report-to" in err and not (tmp_path / "u").exists()
