"""The ``fed run`` experiment as a Flower App, for Flower's own launcher: ``flwr run .``.

``[tool.flwr.app]`` in pyproject.toml points at :data:`server_app` and :data:`client_app`; both are
built from the run config (defaults in ``[tool.flwr.app.config]``, overrides with
``flwr run . --run-config 'key=value ...'``):

- ``config``: the experiment YAML; a relative path is taken from the app's root, so ``configs/``
  travels inside the app bundle to every node.
- ``seed``: overrides the YAML's seed; −1 keeps it.
- ``out``: the directory the ServerApp writes ``rounds.jsonl`` (one record per round, as
  ``poisonlab fed run``), ``checkpoints/`` (the global vector after the last finished round) and
  ``run_config.json`` to. A relative path is taken from the ServerApp process's working directory.
- ``experiment-loader`` and ``task-builder``: ``module:function`` references turning the YAML into an
  ``ExperimentConfig`` ``(path, seed | None)`` and the config into a ``Task``; poisonlab's by default
  (fedharness itself imports no poisonlab code).

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

from fedharness import aggregators, checkpoint
from fedharness.engines import flower
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
    """Run every round of the configured experiment, writing each record as it finishes."""
    sim = build_simulation(dict(context.run_config))
    out = Path(str(context.run_config["out"])).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_config.json").write_text(json.dumps(dict(context.run_config), indent=2) + "\n", encoding="utf-8")
    records = out / "rounds.jsonl"
    records.write_text("", encoding="utf-8")
    for global_vec, record in flower.run_rounds(grid, sim, sim.initial_global(), 1):
        with records.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=lambda v: v.tolist()) + "\n")
        checkpoint.save(out / "checkpoints", record["round"], global_vec, aggregators.state_dict(sim.aggregator))
