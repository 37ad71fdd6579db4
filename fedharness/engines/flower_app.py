"""The ``fed run`` experiment as a Flower App, for Flower's own launcher: ``flwr run .``.

``[tool.flwr.app]`` in pyproject.toml points at :data:`server_app` and :data:`client_app`; both are
built from the run config (defaults in ``[tool.flwr.app.config]``, overrides with
``flwr run . --run-config 'key=value ...'``):

- ``config``: the experiment YAML; a relative path is taken from the app's root, so ``configs/``
  travels inside the app bundle to every node.
- ``seed``: overrides the YAML's seed; −1 keeps it.
- ``out``: the directory the ServerApp writes ``rounds.jsonl`` (one record per round), ``checkpoints/``
  (the global vector after the last finished round) and ``run_config.json`` to, through the round
  loop every front end shares (``fedharness.experiment.run_rounds``). A relative path is taken from
  the ServerApp process's working directory.
- ``resume``: continue from ``out``'s last checkpoint (a resumed run equals an uninterrupted one).
- ``experiment-loader`` and ``task-builder``: ``module:function`` references turning the YAML into an
  ``ExperimentConfig`` ``(path, seed | None)`` and the config into a ``Task``; by default
  ``fedharness.config:load_experiment`` and ``fedharness.experiment:build_task``, whose task registry is what packages declare under the entry-point
  group ``fedharness.tasks`` (poisonlab declares its ``TASKS``), so fedharness imports no code above it.

Rounds, strategy and ClientApp are those of :mod:`fedharness.engines.flower`. Nothing is shipped
through Ray here: each ClientApp process builds the Simulation from the run config once and caches
it, so the YAML's data must be readable on every node. The YAML's ``engine`` section is ignored; the
number of SuperNodes, the CPUs per ClientApp and the Ray cluster are the federation's settings.
"""

from __future__ import annotations

import functools
import importlib
import json
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedharness.engines import flower
from fedharness.experiment import run_rounds
from fedharness.simulation import Simulation

APP_ROOT = Path(__file__).resolve().parents[2]


def _resolve(ref: str) -> Any:
    """The object named by ``module:attribute``."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


def build_simulation(run_config: dict[str, Any]) -> Simulation:
    """The Simulation described by a run config (``config``, ``seed``, ``experiment-loader``, ``task-builder``)."""
    seed = int(run_config["seed"])
    cfg = _resolve(str(run_config["experiment-loader"]))(APP_ROOT / str(run_config["config"]), None if seed < 0 else seed)
    return Simulation(cfg, _resolve(str(run_config["task-builder"]))(cfg))


@functools.lru_cache(maxsize=2)
def _cached_simulation(run_config: tuple[tuple[str, Any], ...]) -> Simulation:
    return build_simulation(dict(run_config))


def process_simulation(context: Context) -> Simulation:
    """This process's Simulation for the run config (built on first use, then cached)."""
    return _cached_simulation(tuple(sorted(context.run_config.items())))


client_app = flower.client_app(process_simulation)
server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """Run (or resume) every round of the configured experiment, writing each record as it finishes."""
    run_config = dict(context.run_config)
    sim = build_simulation(run_config)
    out = Path(str(run_config["out"])).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_config.json").write_text(json.dumps(run_config, indent=2) + "\n", encoding="utf-8")
    run_rounds(sim, out, resume=bool(run_config.get("resume", False)), progress=False,
               rounds=lambda s, g, first: flower.run_rounds(grid, s, g, first))
