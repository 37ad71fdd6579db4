"""``poisonlab fed``: federated experiments from YAML configs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import click


def load_experiment(path: Path, seed: int | None):
    """Parse and validate an experiment YAML (``fedharness.config.load_experiment``, torch-free); ``seed``
    overrides the file's."""
    from fedharness.config import load_experiment as load

    return load(path, seed)


def yaml_source(name: str, example: str) -> Callable:
    """The YAML a command runs, as the argument NAME or as ``--config`` (``example`` names a run's copy)."""

    def decorate(command: Callable) -> Callable:
        command = click.option("--config", "config_option", type=click.Path(path_type=Path), default=None,
                               help=f"The YAML, as the {name.upper()} argument (e.g. {example}).")(command)
        return click.argument(name, type=click.Path(path_type=Path), required=False)(command)

    return decorate


def one_yaml(given: Path | None, option: Path | None, name: str) -> Path:
    """The YAML given once, as the argument ``name`` or as ``--config``."""
    from labcore.errors import InputError

    if (given is None) == (option is None):
        raise InputError(f"give the YAML once: as {name.upper()} or as --config")
    return given or option


@click.group()
def fed() -> None:
    """Federated training with attacks and defenses."""


@fed.command("run")
@yaml_source("config", "a run's config.yaml")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run directory (default runs/<config name>).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--seed", type=int, default=None, help="Override the config's seed.")
@click.option("--engine", type=click.Choice(["inprocess", "flower"]), default=None,
              help="Override engine.name: flower runs the clients through Flower's simulation engine.")
def run(config: Path | None, config_option: Path | None, out: Path | None, resume: bool, seed: int | None,
        engine: str | None) -> None:
    """Run the experiment described by CONFIG (YAML); task.name picks the task (image_classification,
    sst2_classification, t2i_lora, …)."""
    config = one_yaml(config, config_option, "config")
    cfg = load_experiment(config, seed)
    if engine is not None:
        cfg.engine.name = engine
    out = out or Path("runs") / config.stem
    from poisonlab.fed_run import run_experiment

    summary = run_experiment(cfg, out, resume=resume)
    click.echo(
        f"{out}: final MTA {summary['final_main_accuracy']:.4f}, final ASR {summary['final_attack_success_rate']:.4f}"
    )


@fed.command("grid")
@yaml_source("grid", "a grid run's grid.yaml")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Grid directory (default runs/<grid name>).")
@click.option("--resume", is_flag=True, help="Continue an interrupted grid (finished cells are kept).")
@click.option("--seed", type=int, default=None, help="Override the seed of every cell.")
def grid(grid: Path | None, config_option: Path | None, out: Path | None, resume: bool, seed: int | None) -> None:
    """Run the attack × defense grid described by GRID (YAML) into one report; the run's grid.yaml reruns it."""
    grid = one_yaml(grid, config_option, "grid")
    from poisonlab.grid import run_grid

    out = out or Path("runs") / grid.stem
    rows = run_grid(grid, out, seed=seed, resume=resume)
    for row in rows:
        click.echo(f"{row['attack']:>20} × {row['defense']:<16} MTA {row['final MTA']:.4f}  ASR {row['final ASR']:.4f}")
    click.echo(f"{out}/report.html")
