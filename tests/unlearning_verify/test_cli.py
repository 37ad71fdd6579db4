"""``poisonlab unlearn``: the happy path on scikit-learn digits, and bad input → one line, exit 2, no output."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import torch

from poisonlab.cli import main

REPO = Path(__file__).resolve().parents[2]


def run(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["poisonlab", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


FIT = ["--epochs", "30", "--lr", "5e-3", "--batch-size", "32"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, data_dir) -> Path:
    return tmp_path_factory.mktemp("unlearn")


@pytest.fixture(scope="module")
def trained(workdir: Path) -> Path:
    """mark → train → delete (retrain, noop) on digits, run once for the module.

    The key is a fixed simulated one (seed 0), so the verdicts do not depend on a random key.
    """
    from unittest.mock import patch

    from unlearning_verify.keys import OwnerKey

    OwnerKey.generate(1, "lsb", 10, seed=0).save(workdir / "k.json")

    cmds = [
        ["unlearn", "mark", "--data", "digits", "--owner", "1", "--owners", "4", "--family", "lsb",
         "--key-file", str(workdir / "k.json"), "--out", str(workdir / "marked")],
        ["unlearn", "train", "--dataset", str(workdir / "marked"), "--out", str(workdir / "m0"), *FIT],
        ["unlearn", "delete", "--dataset", str(workdir / "marked"), "--model", str(workdir / "m0"), "--owner", "1",
         "--behaviour", "retrain", *FIT, "--out", str(workdir / "m-retrain")],
        ["unlearn", "delete", "--dataset", str(workdir / "marked"), "--model", str(workdir / "m0"), "--owner", "1",
         "--behaviour", "noop", "--out", str(workdir / "m-noop")],
    ]
    threads = torch.get_num_threads()
    for c in cmds:
        with patch.object(sys, "argv", ["poisonlab", *c]):
            main()
    torch.set_num_threads(threads)
    return workdir


def test_mark_writes_dataset_and_private_key(trained: Path, monkeypatch, capsys, tmp_path):
    code, out, _ = run(["unlearn", "mark", "--data", "digits", "--owner", "0", "--owners", "4", "--key-file",
                        str(tmp_path / "new.json"), "--out", str(tmp_path / "m")], monkeypatch, capsys)
    assert code == 0 and "new key written" in out
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o600
    assert json.loads((tmp_path / "new.json").read_text())["secret"] not in out
    key = trained / "k.json"
    secret = json.loads(key.read_text())["secret"]
    for f in (trained / "marked").rglob("*"):
        if f.is_file() and f.suffix in (".json", ".jsonl", ".md", ".yaml", ".html"):
            assert secret not in f.read_text(errors="ignore")
    assert secret not in capsys.readouterr().out
    metrics = json.loads((trained / "marked" / "metrics.json").read_text())
    assert metrics["marked"] > 0 and metrics["invisibility"]["max_abs_change"] <= 15 / 255 + 1e-6
    assert (trained / "marked" / "dataset").is_dir() and (trained / "marked" / "README.md").is_file()


def test_verify_honest_and_noop(trained: Path, monkeypatch, capsys):
    base = ["unlearn", "verify", "--key", str(trained / "k.json"), "--before", str(trained / "m0"), "--data", "digits",
            "--queries", "60"]
    code, out, _ = run([*base, "--model", str(trained / "m-retrain")], monkeypatch, capsys)
    assert code == 0 and out.startswith("HONORED")
    code, out, _ = run([*base, "--model", str(trained / "m-noop"), "--out", str(trained / "v")], monkeypatch, capsys)
    assert code == 0 and out.startswith("NOT HONORED")
    assert json.loads((trained / "v" / "verdict.json").read_text())["verdict"]["verdict"] == "NOT HONORED"


@pytest.mark.parametrize("extra,message", [
    (["--queries", "0"], "queries must be ≥ 1"),
    (["--alpha", "1.5"], "alpha must lie strictly between 0 and 1"),
    (["--alpha", "0"], "alpha must lie strictly between 0 and 1"),
    (["--beta", "-0.1"], "beta must lie strictly between 0 and 1"),
])
def test_verify_bad_settings(trained: Path, monkeypatch, capsys, extra, message):
    out_dir = trained / "bad-out"
    code, _, err = run(["unlearn", "verify", "--model", str(trained / "m-noop"), "--key", str(trained / "k.json"),
                        "--before", str(trained / "m0"), "--data", "digits", "--out", str(out_dir), *extra],
                       monkeypatch, capsys)
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out_dir.exists() and not Path(str(out_dir) + ".partial").exists()


def test_verify_missing_and_wrong_key_file(trained: Path, monkeypatch, capsys, tmp_path):
    base = ["unlearn", "verify", "--model", str(trained / "m-noop"), "--before", str(trained / "m0"),
            "--data", "digits", "--out", str(tmp_path / "v")]
    code, _, err = run([*base, "--key", str(tmp_path / "missing.json")], monkeypatch, capsys)
    assert code == 2 and "not found" in err and err.count("\n") == 1
    wrong = tmp_path / "wrong.json"
    wrong.write_text("{}")
    wrong.chmod(0o600)
    code, _, err = run([*base, "--key", str(wrong)], monkeypatch, capsys)
    assert code == 2 and "not a poisonlab key file" in err
    assert not (tmp_path / "v").exists()


def test_verify_label_space_mismatch(trained: Path, monkeypatch, capsys, tmp_path):
    from unlearning_verify.keys import OwnerKey

    OwnerKey.generate(1, "lsb", 5).save(tmp_path / "k5.json")
    code, _, err = run(["unlearn", "verify", "--model", str(trained / "m-noop"), "--key", str(tmp_path / "k5.json"),
                        "--before", str(trained / "m0"), "--data", "digits", "--out", str(tmp_path / "v")],
                       monkeypatch, capsys)
    assert code == 2 and "label space" in err and not (tmp_path / "v").exists()
    code, _, err = run(["unlearn", "verify", "--model", str(trained / "m-noop"), "--key", str(trained / "k.json"),
                        "--before", str(trained / "m0"), "--data", "mnist"], monkeypatch, capsys)
    assert code == 2 and "label space" in err


def test_mark_bad_input_leaves_nothing(trained: Path, monkeypatch, capsys, tmp_path):
    code, _, err = run(["unlearn", "mark", "--data", "digits", "--owner", "9", "--owners", "4", "--key-file",
                        str(tmp_path / "k.json"), "--out", str(tmp_path / "m")], monkeypatch, capsys)
    assert code == 2 and "--owner" in err
    assert not (tmp_path / "m").exists() and not (tmp_path / "k.json").exists()
    code, _, err = run(["unlearn", "mark", "--data", "digits", "--owner", "1", "--owners", "4", "--family", "blended",
                        "--key-file", str(trained / "k.json"), "--out", str(tmp_path / "m")], monkeypatch, capsys)
    assert code == 2 and "belongs to owner 1, family lsb" in err and not (tmp_path / "m").exists()


def test_bench_family_params_reach_the_watermark(monkeypatch, capsys, tmp_path, data_dir):
    out = tmp_path / "b"
    code, _, err = run(["unlearn", "bench", "--data", "digits", "--families", "wanet", "--behaviours", "noop",
                        "--seeds", "1", "--epochs", "2", "--family-param", "wanet.s=1.0", "--out", str(out)],
                       monkeypatch, capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert [r["watermark_params"] for r in rows] == [{"s": 1.0}]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["wall_time_s"] > 0 and metrics["summary"][0]["basr_before_min"] == rows[0]["p_hat"]


@pytest.mark.parametrize("param, message", [("blended.alpha=0.3", "names no family"), ("wanet.s", "KEY=VALUE")])
def test_bench_bad_family_param(monkeypatch, capsys, tmp_path, data_dir, param, message):
    code, _, err = run(["unlearn", "bench", "--data", "digits", "--families", "wanet", "--seeds", "1",
                        "--family-param", param, "--out", str(tmp_path / "b")], monkeypatch, capsys)
    assert code == 2 and message in err and not (tmp_path / "b").exists()


@contextmanager
def serving(args: list[str]) -> Iterator[str]:
    """``poisonlab unlearn serve ARGS --port 0`` in a subprocess; yields its URL once /health answers."""
    import httpx

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "poisonlab", "unlearn", "serve", *args, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[-1]
        for _ in range(200):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def verdict_of(args: list[str], out: Path, monkeypatch, capsys) -> dict:
    code, _, err = run([*args, "--out", str(out)], monkeypatch, capsys)
    assert code == 0, err
    return json.loads((out / "verdict.json").read_text())["verdict"]


@pytest.mark.parametrize("model, behaviour", [("m-noop", "noop"), ("m-retrain", "noop"), ("m0", "input_transform")])
def test_endpoint_gives_the_same_verdict_as_the_model(trained: Path, monkeypatch, capsys, tmp_path, model, behaviour):
    base = ["unlearn", "verify", "--key", str(trained / "k.json"), "--before", str(trained / "m0"), "--data", "digits",
            "--queries", "60", "--owner-data", str(trained / "marked")]
    local = trained / model
    if behaviour != "noop":
        local = tmp_path / "served"
        code, _, err = run(["unlearn", "delete", "--dataset", str(trained / "marked"), "--model", str(trained / model),
                            "--owner", "1", "--behaviour", behaviour, "--out", str(local)], monkeypatch, capsys)
        assert code == 0, err
    by_model = verdict_of([*base, "--model", str(local)], tmp_path / "a", monkeypatch, capsys)
    extra = [] if behaviour == "noop" else ["--behaviour", behaviour, "--dataset", str(trained / "marked"), "--owner", "1"]
    with serving(["--model", str(trained / model), *extra]) as url:
        endpoint = url if behaviour == "noop" else url + "/predict/"  # the printed URL, or the endpoint itself
        by_url = verdict_of([*base, "--endpoint", endpoint], tmp_path / "b", monkeypatch, capsys)
    assert by_url["verdict"] == by_model["verdict"] and by_url["decided_by"] == by_model["decided_by"]
    assert [m["hits"] for m in by_url["markers"]] == [m["hits"] for m in by_model["markers"]]
    assert by_url["membership"] == by_model["membership"] and by_url["queries"] == by_model["queries"]


class BadHandler(BaseHTTPRequestHandler):
    """Answers POST /predict badly, as chosen by the class attribute ``mode``."""

    mode = "garbage"

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.mode == "close":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if self.mode == "slow":
            time.sleep(2)
        body = {"garbage": b"<html>not json", "wrong": json.dumps({"labels": [0, 0]}).encode(),
                "slow": json.dumps({"labels": [0]}).encode()}[self.mode]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # the "close" mode breaks the handler on purpose
        pass


@pytest.fixture(scope="module")
def untrained(tmp_path_factory, data_dir) -> Path:
    """A key file and an (untrained) model of its label space: enough for the client-side errors."""
    from poisonlab.unlearn_models import save_model
    from unlearning_verify.keys import OwnerKey
    from unlearning_verify.training import build_model

    folder = tmp_path_factory.mktemp("light")
    OwnerKey.generate(1, "lsb", 10, seed=0).save(folder / "k.json")
    save_model(build_model(torch.zeros(1, 1, 8, 8), 10, 0), folder / "m0", (1, 8, 8), 10)
    return folder


@pytest.mark.parametrize("mode, message", [("garbage", "malformed JSON"), ("wrong", "malformed JSON"),
                                           ("slow", "timed out"), ("close", "connection failed")])
def test_bad_endpoint_is_one_line_exit_2_and_no_verdict(untrained: Path, monkeypatch, capsys, tmp_path, mode, message):
    trained = untrained
    handler = type("Handler", (BadHandler,), {"mode": mode})
    server = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, _, err = run(["unlearn", "verify", "--endpoint", url, "--key", str(trained / "k.json"), "--before",
                            str(trained / "m0"), "--data", "digits", "--timeout", "0.5", "--retries", "1",
                            "--out", str(tmp_path / "v")], monkeypatch, capsys)
    finally:
        server.shutdown()
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "v").exists() and not Path(str(tmp_path / "v") + ".partial").exists()


def test_endpoint_budget_is_enforced(trained: Path, monkeypatch, capsys, tmp_path):
    with serving(["--model", str(trained / "m-noop"), "--output", "label"]) as url:
        code, _, err = run(["unlearn", "verify", "--endpoint", url, "--key", str(trained / "k.json"), "--before",
                            str(trained / "m0"), "--data", "digits", "--queries", "60", "--budget", "20",
                            "--out", str(tmp_path / "v")], monkeypatch, capsys)
    assert code == 2 and "budget of 20" in err and not (tmp_path / "v").exists()
