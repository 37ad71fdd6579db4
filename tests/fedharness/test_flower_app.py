"""``flwr run`` of the Flower App (fedharness.engines.flower_app) gives the in-process engine's results."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fedharness.simulation import Simulation
from poisonlab.commands.fed import load_experiment
from poisonlab.fed_run import build_task

pytest.importorskip("flwr")
pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]
CONFIG = """\
seed: 0
data: {name: digits}
task: {target_label: 2, trigger_size: 2, poison_fraction: 0.5}
federation: {num_clients: 3, clients_per_round: 3, rounds: 2, server_lr: 3.0, partition: iid}
local: {epochs: 1, lr: 0.1, batch_size: 100}
attack: {name: model_replacement, num_attackers: 1, rounds: [2], params: {epochs: 1, lr: 0.05}}
aggregator: {name: mean}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Return once the SuperLink answers on /health (as ``flwr run`` probes its local one)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"flower-superlink did not come up on port {port}")


@pytest.mark.flower
def test_flwr_run_matches_inprocess(tmp_path):
    """A SuperLink in simulation mode, then ``flwr run`` of this repo with a 3-client digits config.

    The app runs in this venv (runtime dependency installation off) on a fresh local Ray instance
    (``RAY_ADDRESS=local``) whose workers use this process's thread count, so both sum in the same
    order. Tolerance as in test_flower: MTA/ASR to 1e-6, global vector and update
    norms to 1e-4 (float32 rounding; measured here: MTA/ASR equal, vectors within 5e-7).
    """
    config, out, home = tmp_path / "digits.yaml", tmp_path / "out", tmp_path / "flwr-home"
    config.write_text(CONFIG)
    port = _free_port()
    home.mkdir()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "test"\n\n[superlink.test]\naddress = "127.0.0.1:{port}"\ninsecure = true\n')
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "FLWR_HOME": str(home),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        "RAY_ADDRESS": "local",
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
        "MKL_NUM_THREADS": str(torch.get_num_threads()),
    }
    log = (tmp_path / "superlink.log").open("w")
    superlink = subprocess.Popen(
        ["flower-superlink", "--insecure", "--simulation", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        _wait_healthy(port, superlink)
        run = subprocess.run(
            ["flwr", "run", str(REPO), "test", "--stream",
             "--run-config", f'config="{config}" out="{out}"',
             "--federation-config", "num-supernodes=3 client-resources-num-cpus=1 init-args-num-cpus=2"],
            env=env, capture_output=True, text=True, timeout=300,
        )
    finally:
        superlink.terminate()
        superlink.wait(timeout=30)
        log.close()
    rows_path = out / "rounds.jsonl"
    assert rows_path.exists(), run.stdout + run.stderr + (tmp_path / "superlink.log").read_text()
    got = [json.loads(line) for line in rows_path.read_text().splitlines()]

    cfg = load_experiment(config, None)
    sim = Simulation(cfg, build_task(cfg))
    expected = list(sim.rounds(sim.initial_global()))

    assert [r["round"] for r in got] == [1, 2], run.stdout + run.stderr
    for (_, r_ref), r in zip(expected, got):
        assert r["path"] == "flower"
        assert r["sampled"] == r_ref["sampled"] and r["malicious"] == r_ref["malicious"]
        for key in ("main_accuracy", "attack_success_rate"):
            assert r[key] == pytest.approx(r_ref[key], abs=1e-6)
        assert r["update_norms"] == pytest.approx(r_ref["update_norms"], abs=1e-4)
    assert got[1]["malicious"] == [0]
    final = load_file(str(out / "checkpoints" / "global.safetensors"))["global"]
    assert float((final - expected[-1][0]).abs().max()) <= 1e-4
    assert json.loads((out / "checkpoints" / "state.json").read_text()) == {"round": 2}
