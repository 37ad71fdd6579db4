"""Flower backend: the same experiment, with clients run as Flower ``ClientApp``s by the simulation engine.

- :class:`HarnessStrategy` is a ``FedAvg`` whose ``aggregate_train`` stacks the replies' local
  models in the round's client order and applies the harness's server rule and aggregator
  (:meth:`Simulation.finish_round`), so every defense, including FLTrust's root update and
  validation testing (server-side steps), runs unchanged. Client-reported ``num-examples`` is ignored.
- The ``ClientApp`` looks up its partition id; it trains honestly, or runs the configured attack when
  the server marks it malicious for the round (with ``colluders`` = the round's attacker count, so
  γ is split as in-process). Attacks that read the benign models ("benign" knowledge) get them in a
  second message after the benign clients have replied.
- The ``ServerApp`` drives the rounds itself with ``grid.send_and_receive`` (the custom-main pattern
  of Flower's strategy docs), so that sampling follows :meth:`Simulation.plan` exactly.

Client data reaches the Ray workers once, through the Ray object store. flwr and ray are imported
lazily: they are the optional ``flower`` extra. :mod:`fedharness.engines.flower_app` serves the same
ClientApp and rounds to Flower's own launcher, ``flwr run``.

Multi-node: start a Ray cluster (``ray start --head`` on one node, ``ray start --address=<head>:6379``
on the others, same code and data everywhere) and set ``engine.ray_address: auto``; the simulation
engine then places ClientApps on every node's CPUs (``engine.client_num_cpus`` each).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import torch

from fedharness.simulation import RoundPlan, Simulation

if TYPE_CHECKING:
    from flwr.app import Context

_CACHE: dict[str, Simulation] = {}
_DONE = object()


def _local_sim(ref) -> Simulation:
    """The Simulation shipped to this Ray worker (fetched once per worker process)."""
    import ray

    key = ref.hex()
    if key not in _CACHE:
        _CACHE[key] = ray.get(ref)
    return _CACHE[key]


def _vector(arrays, key: str) -> torch.Tensor:
    return torch.from_numpy(np.array(arrays[key].numpy(), dtype=np.float32, copy=True))


def client_app(simulation: Callable[[Context], Simulation]):
    """A ClientApp serving partition ids 0..n−1 of ``simulation(context)``, this process's Simulation."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.query()
    def partition(msg: Message, context) -> Message:
        pid = int(context.node_config["partition-id"])
        return Message(RecordDict({"metrics": MetricRecord({"partition-id": pid})}), reply_to=msg)

    @app.train()
    def train(msg: Message, context) -> Message:
        sim = simulation(context)
        pid = int(context.node_config["partition-id"])
        cfg = msg.content["config"]
        round_index = int(cfg["server-round"])
        global_vec = _vector(msg.content["arrays"], "global")
        info: dict = {}
        if cfg["role"] == "malicious":
            benign = msg.content["arrays"]["benign"].numpy() if "benign" in msg.content["arrays"] else None
            benign_locals = torch.from_numpy(np.array(benign, dtype=np.float32)) if benign is not None else torch.empty(0)
            ctx = sim.attack_context(round_index, global_vec, [pid], benign_locals, colluders=int(cfg["colluders"]))
            local = sim.attack(ctx)[0]
            info = ctx.info
        else:
            seed = sim.seeds(round_index, RoundPlan([pid], []))[pid]
            local = sim.engine.train(global_vec, [sim.client_data(pid)], sim.cfg.local, [seed])[0]
        content = RecordDict({
            "arrays": ArrayRecord({"local": Array(local.numpy())}),
            "metrics": MetricRecord({"num-examples": int(len(sim.shards[pid])), "partition-id": pid}),
            "info": ConfigRecord({"json": json.dumps(info, default=float)}),
        })
        return Message(content, reply_to=msg)

    return app


def strategy_class():
    """``HarnessStrategy``, built on first use so that importing this module needs no flwr."""
    from flwr.app import Array, ArrayRecord, MetricRecord
    from flwr.serverapp.strategy import FedAvg

    class HarnessStrategy(FedAvg):
        """FedAvg whose aggregation is the harness's server rule and aggregator."""

        def __init__(self, sim: Simulation) -> None:
            super().__init__(fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1)
            self.sim = sim
            self.pending: tuple | None = None
            self.result: tuple[torch.Tensor, dict] | None = None

        def begin(self, round_index: int, global_vec: torch.Tensor, plan: RoundPlan, start: float) -> None:
            self.pending = (round_index, global_vec, plan, start)

        def aggregate_train(self, server_round, replies):
            valid, errors = self._check_and_log_replies(replies, is_train=True)
            round_index, global_vec, plan, start = self.pending
            if errors or server_round != round_index:
                reasons = "; ".join(str(m.error.reason) for m in errors)
                raise RuntimeError(f"round {server_round}: {len(errors)} client(s) failed: {reasons}")
            rows, info = {}, {}
            for msg in valid:
                pid = int(msg.content["metrics"]["partition-id"])
                rows[pid] = _vector(msg.content["arrays"], "local")
                info.update(json.loads(msg.content["info"]["json"]))
            local_vecs = torch.stack([rows[c] for c in plan.sampled])
            new_global, record = self.sim.finish_round(round_index, global_vec, plan, local_vecs, start, "flower", info)
            self.result = (new_global, record)
            metrics = MetricRecord({k: record[k] for k in ("main_accuracy", "attack_success_rate")})
            return ArrayRecord({"global": Array(new_global.numpy())}), metrics

    return HarnessStrategy


def wait_for_nodes(grid, count: int, timeout_s: float = 600.0) -> list[int]:
    """Node ids once all ``count`` SuperNodes have registered (they join after the ServerApp starts)."""
    deadline = time.monotonic() + timeout_s
    while len(nodes := list(grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(nodes)} of {count} Flower SuperNodes registered in {timeout_s:.0f} s")
        time.sleep(0.2)
    return nodes


def run_rounds(grid, sim: Simulation, global_vec: torch.Tensor, first_round: int) -> Iterator[tuple[torch.Tensor, dict]]:
    """Drive rounds ``first_round``…R over ``grid`` (a ServerApp's), yielding (global, record) after each."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict

    strategy = strategy_class()(sim)

    def messages(pids: list[int], node_of: dict[int, int], round_index: int, arrays: dict, role: str, k: int) -> list:
        config = ConfigRecord({"server-round": round_index, "role": role, "colluders": k})
        content = RecordDict({"arrays": ArrayRecord(arrays), "config": config})
        return [Message(content=content, message_type=MessageType.TRAIN, dst_node_id=node_of[p], group_id=str(round_index))
                for p in pids]

    def send(msgs: list) -> list:
        return list(grid.send_and_receive(msgs)) if msgs else []

    nodes = wait_for_nodes(grid, sim.cfg.federation.num_clients)
    queries = [Message(content=RecordDict(), message_type=MessageType.QUERY, dst_node_id=n, group_id="0") for n in nodes]
    answers = list(grid.send_and_receive(queries))
    failed = [str(a.error.reason) for a in answers if a.has_error()]
    if failed:
        raise RuntimeError(f"partition-id query failed: {failed[0]}")
    node_of = {int(a.content["metrics"]["partition-id"]): a.metadata.src_node_id for a in answers}
    g = global_vec
    knows_benign = sim.attack is not None and getattr(sim.attack, "knowledge", "own") == "benign"
    for r in range(first_round, sim.cfg.federation.rounds + 1):
        start = time.perf_counter()
        plan = sim.plan(r)
        strategy.begin(r, g, plan, start)
        arrays = {"global": Array(g.numpy())}
        k = len(plan.malicious)
        own = [] if knows_benign else plan.malicious
        replies = send(messages(plan.benign, node_of, r, arrays, "benign", k)
                       + messages(own, node_of, r, arrays, "malicious", k))
        if knows_benign and plan.malicious:
            rows = {int(m.content["metrics"]["partition-id"]): m.content["arrays"]["local"].numpy()
                    for m in replies if not m.has_error()}
            benign = np.stack([rows[c] for c in plan.benign]) if plan.benign else np.zeros((0, g.numel()), np.float32)
            replies += send(messages(plan.malicious, node_of, r, {**arrays, "benign": Array(benign)}, "malicious", k))
        strategy.aggregate_train(r, replies)
        g, record = strategy.result
        yield g, record


def server_app(sim: Simulation, global_vec: torch.Tensor, first_round: int, out: queue.Queue):
    """A ServerApp running rounds ``first_round``…R and putting (global, record) on ``out``."""
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        for item in run_rounds(grid, sim, global_vec, first_round):
            out.put(item)

    return app


def rounds(sim: Simulation, global_vec: torch.Tensor, first_round: int) -> Iterator[tuple[torch.Tensor, dict]]:
    """Rounds ``first_round``…R through Flower's simulation engine, yielding like ``Simulation.rounds``."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    import ray
    from flwr.simulation import run_simulation

    eng = sim.cfg.engine
    own_ray = not ray.is_initialized()
    if own_ray:
        ray.init(address=eng.ray_address, num_cpus=eng.ray_num_cpus if eng.ray_address is None else None,
                 include_dashboard=False, log_to_driver=False)
    results: queue.Queue = queue.Queue()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            ref = ray.put(sim)
            run_simulation(
                server_app=server_app(sim, global_vec, first_round, results),
                client_app=client_app(lambda _context: _local_sim(ref)),
                num_supernodes=sim.cfg.federation.num_clients,
                backend_config={"client_resources": {"num_cpus": eng.client_num_cpus, "num_gpus": 0.0}},
            )
        except BaseException as exc:  # noqa: BLE001  re-raised in the consuming thread
            failure.append(exc)
        finally:
            results.put(_DONE)

    thread = threading.Thread(target=run, name="flower-simulation", daemon=True)
    thread.start()
    try:
        expected = sim.cfg.federation.rounds - first_round + 1
        for _ in range(expected):
            item = results.get()
            if item is _DONE:
                break
            yield item
        thread.join()
        if failure:
            raise failure[0]
        if thread.is_alive() or results.qsize() > 1:
            raise RuntimeError("the Flower simulation did not finish cleanly")
    finally:
        if own_ray:
            ray.shutdown()
