"""A small backdoored MNIST model shared by the verification tests (trained once per session)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from labcore.cores import single_intra_op_thread
from unlearning_verify import training
from unlearning_verify.keys import OwnerKey
from unlearning_verify.marking import MarkedSet, mark, owner_split
from unlearning_verify.watermarks import ImageWatermark, build


@dataclass
class Scenario:
    x: torch.Tensor
    y: torch.Tensor
    xt: torch.Tensor
    yt: torch.Tensor
    key: OwnerKey
    wm: ImageWatermark
    marked: MarkedSet
    model: nn.Module
    checkpoints: list
    clean: nn.Module
    forget: np.ndarray


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with single_intra_op_thread():
        yield


@pytest.fixture(scope="session")
def lsb_scenario(mnist) -> Scenario:
    """2400 MNIST training images, 5 owners; owner 0 marks half its samples with LSB; the default recipe."""
    x, y, xt, yt = mnist
    x, y = x[:2400], y[:2400]
    key = OwnerKey.generate(0, "lsb", 10, seed=0)
    wm = build(key, (1, 28, 28))
    owner_of = owner_split(len(x), 5, 0)
    marked = mark(x, y, owner_of, 0, wm, 0.5, 0)
    cfg = training.TrainConfig()
    forget = owner_of == 0
    keep = torch.as_tensor(~forget)
    with single_intra_op_thread():
        model, ckpts = training.fit(marked.x, marked.y, 10, cfg, 0)
        clean, _ = training.fit(x[keep], y[keep], 10, cfg, 1)
    return Scenario(x, y, xt, yt, key, wm, marked, model, ckpts, clean, forget)
