"""Shared test setup: few threads (2-core CI), offline Hub, the real data directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(int(os.environ.get("POISONLAB_TEST_THREADS", "1")))

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder (``$POISONLAB_DATA_DIR``, default ``../shared/data`` beside the repo)."""
    path = Path(os.environ.get("POISONLAB_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
    if not (path / "mnist").is_dir() or not (path / "sst2").is_dir():
        pytest.fail(f"real data not found in {path}; set POISONLAB_DATA_DIR to the shared data folder")
    os.environ["POISONLAB_DATA_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def mnist(data_dir: Path):
    """MNIST as tensors: (x_train, y_train, x_test, y_test), images (N, 1, 28, 28) in [0, 1]."""
    from poisonlab import data

    ds = data.load("mnist")
    return (*data.image_tensors(ds["train"]), *data.image_tensors(ds["test"]))


@pytest.fixture
def cli(monkeypatch, capsys):
    """``cli(*args)`` runs ``poisonlab ARGS`` in-process and returns (exit code, captured output)."""
    from poisonlab.cli import main

    def run(*args: object):
        monkeypatch.setattr(sys, "argv", ["poisonlab", *map(str, args)])
        try:
            main()
        except SystemExit as exc:
            return exc.code, capsys.readouterr()
        return 0, capsys.readouterr()

    return run
