"""``--config`` for commands whose knobs are one dataclass: defaults, YAML, flag overrides, reload."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from labcore.errors import InputError
from poisonlab.config import config_command, from_dict, load_config
from poisonlab.runs import staged_output, write_json, write_yaml


@dataclass
class Inner:
    epochs: int = 3
    lr: float = 0.1


@dataclass
class Knobs:
    name: str
    seed: int = 0
    shuffle: bool = True
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    inner: Inner = field(default_factory=Inner)

    def validate(self) -> None:
        if self.inner.epochs < 1:
            raise InputError("inner.epochs must be >= 1")


@click.command()
@click.option("--name", default=None)
@click.option("--seed", type=int, default=None)
@click.option("--shuffle/--no-shuffle", default=None)
@click.option("--size", "sizes", type=int, multiple=True)
@click.option("--epochs", type=int, default=None)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@config_command(Knobs, paths={"epochs": "inner.epochs"}, keep=["out"])
def toy(cfg: Knobs, out: Path) -> None:
    """A seeded toy run: config.yaml and metrics.json."""
    rng = np.random.default_rng(cfg.seed)
    with staged_output(out) as stage:
        write_yaml(stage / "config.yaml", cfg)
        write_json(stage / "metrics.json", {"draws": rng.normal(size=cfg.inner.epochs).tolist(), "sizes": cfg.sizes,
                                            "shuffle": cfg.shuffle, "lr": cfg.inner.lr, "name": cfg.name})


def run(*args: object):
    result = CliRunner().invoke(toy, [str(a) for a in args], standalone_mode=False)
    return result


def test_dataclass_defaults_apply_when_no_option_and_no_file(tmp_path):
    assert run("--name", "a", "--out", tmp_path / "r").exception is None
    cfg = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert cfg == {"name": "a", "seed": 0, "shuffle": True, "sizes": [1, 2], "inner": {"epochs": 3, "lr": 0.1}}


def test_flags_override_the_yaml_which_overrides_the_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: fromfile\nseed: 4\nshuffle: false\nsizes: [7]\ninner: {epochs: 2, lr: 0.5}\n")
    assert run("--config", path, "--epochs", 5, "--size", 9, "--size", 10, "--out", tmp_path / "r").exception is None
    cfg = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert cfg == {"name": "fromfile", "seed": 4, "shuffle": False, "sizes": [9, 10], "inner": {"epochs": 5, "lr": 0.5}}


def test_run_config_reloads_and_reruns_to_the_same_metrics(tmp_path):
    assert run("--name", "x", "--seed", 11, "--no-shuffle", "--epochs", 4, "--out", tmp_path / "a").exception is None
    assert run("--config", tmp_path / "a" / "config.yaml", "--out", tmp_path / "b").exception is None
    first = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert len(first["draws"]) == 4 and first["shuffle"] is False
    assert (tmp_path / "b" / "metrics.json").read_text() == (tmp_path / "a" / "metrics.json").read_text()
    assert run("--config", tmp_path / "a" / "config.yaml", "--seed", 12, "--out", tmp_path / "c").exception is None
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["draws"] != first["draws"]


@pytest.mark.parametrize("text, message", [
    ("name: a\nepoch: 3\n", "unknown key(s) epoch"),
    ("name: a\ninner: {epochs: many}\n", "'inner.epochs' has the wrong type"),
    ("name: a\nsizes: 1 2\n", "'sizes' has the wrong type: expected list, got str '1 2'"),
    ("name: a\ninner: {epochs: 0}\n", "inner.epochs must be >= 1"),
    ("seed: 1\n", "name is required: pass --name or set 'name:'"),
])
def test_bad_config_is_an_input_error_naming_the_key(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    result = run("--config", path, "--out", tmp_path / "r")
    assert isinstance(result.exception, InputError) and message in str(result.exception)
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


def test_load_config_without_file_uses_given_options_only():
    cfg = load_config(Knobs, None, {"name": "n", "seed": None, "sizes": (), "epochs": 2}, {"epochs": "inner.epochs"})
    assert cfg == Knobs(name="n", inner=Inner(epochs=2))


def test_base_lies_under_the_file_and_a_tuple_path_sets_every_field(tmp_path):
    base = {"name": "scenario", "inner": {"epochs": 7, "lr": 0.3}}
    assert load_config(Knobs, None, {}, base=base) == Knobs(name="scenario", inner=Inner(epochs=7, lr=0.3))
    path = tmp_path / "c.yaml"
    path.write_text("inner: {lr: 0.9}\n")
    cfg = load_config(Knobs, path, {"n": 4}, {"n": ("seed", "inner.epochs")}, base=base)
    assert cfg == Knobs(name="scenario", seed=4, inner=Inner(epochs=4, lr=0.9))
    assert base == {"name": "scenario", "inner": {"epochs": 7, "lr": 0.3}}


def test_class_named_by_string_is_imported_when_the_command_runs(tmp_path):
    @click.command()
    @click.option("--seed", type=int, default=None)
    @config_command("fedharness.config:ExperimentConfig", paths={"seed": "seed"})
    def exp(cfg) -> None:
        click.echo(f"{type(cfg).__name__} {cfg.seed} {cfg.federation.num_clients}")

    result = CliRunner().invoke(exp, ["--seed", "3"])
    assert result.exit_code == 0 and result.output == "ExperimentConfig 3 100\n"


def test_help_shows_the_dataclass_and_base_defaults_when_placed_above_the_options():
    @click.command()
    @config_command(Knobs, paths={"epochs": "inner.epochs", "rate": "inner.lr"}, keep=["out"], base={"inner": {"lr": 0.7}})
    @click.option("--seed", type=int, default=None, help="Seed.")
    @click.option("--epochs", type=int, default=None)
    @click.option("--rate", type=float, default=None)
    @click.option("--out", default=None)
    def toy_help(cfg: Knobs, out: str | None) -> None:
        click.echo(f"{cfg.seed} {cfg.inner}")

    text = CliRunner().invoke(toy_help, ["--help"]).output
    assert "Seed. [default: 0]" in text and "--epochs INTEGER  [default: 3]" in text and "[default: 0.7]" in text
    assert "--config PATH" in text and text.count("[default:") == 3
    result = CliRunner().invoke(toy_help, ["--config", "/nonexistent.yaml"], standalone_mode=False)
    assert isinstance(result.exception, InputError)
    assert CliRunner().invoke(toy_help, ["--epochs", "2"], standalone_mode=False).exception.args[0].startswith("name is required")


def test_changed_fields_names_the_values_that_differ_from_the_class_defaults():
    from labcore.config import changed_fields

    @dataclass
    class Section:
        a: int = 1
        b: str = "x"
        c: float = 0.5

    assert changed_fields(Section()) == [] and changed_fields(Section(b="x")) == []
    assert changed_fields(Section(a=2, c=0.25)) == ["a", "c"]


@dataclass
class _Inner:
    seeds: list[int] = field(default_factory=lambda: [0, 1])


@dataclass
class _Seeded:
    seed: int = 0
    inner: _Inner = field(default_factory=_Inner)


@pytest.mark.parametrize("data, key, value", [
    ({"seed": -1}, "seed", -1),
    ({"seed": 2**32}, "seed", 2**32),
    ({"inner": {"seeds": [3, -2]}}, "inner.seeds", -2),
])
def test_a_seed_out_of_the_generators_range_is_refused_by_key(data, key, value):
    with pytest.raises(InputError, match=rf"^cfg.yaml: {key} {value} is out of range; pass a seed from 0 to 4294967295$"):
        from_dict(_Seeded, data, source="cfg.yaml")
    assert from_dict(_Seeded, {"seed": 2**32 - 1}).seed == 2**32 - 1
