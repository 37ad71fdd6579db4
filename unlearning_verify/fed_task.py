"""The unlearning scenario as a ``fedharness`` task: one client (the data owner) marks its data.

``WatermarkTask`` is the harness's image-classification task over the marked training set; its
``attack_success_rate`` is the owner's watermark success (BASR) on fresh test images, so ``poisonlab
fed run`` trains and tracks the federation from YAML with checkpoints and ``--resume``::

    task: {name: unlearning_watermark, params: {family: blended, owner: 0, rate: 0.5}}

The owner's client is the harness partition's shard ``owner`` (same ``split`` call and seed as the
simulation); partition labels are the original ones, so marking does not move samples between clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fedharness.config import ExperimentConfig
from fedharness.partition import split
from fedharness.tasks.image_classification import ImageClassificationTask
from labcore.config import from_dict
from labcore.errors import InputError
from unlearning_verify.keys import OwnerKey
from unlearning_verify.marking import mark
from unlearning_verify.watermarks import build


@dataclass
class WatermarkTaskConfig:
    """The owner's marking, read from ``task.params``."""

    family: str = "blended"
    owner: int = 0
    rate: float = 0.5
    family_params: dict = field(default_factory=dict)


@dataclass
class WatermarkTask(ImageClassificationTask):
    """Image classification on the marked set; ASR = the owner's watermark success."""

    watermark: object = None
    original_y: torch.Tensor | None = None
    owner_of: np.ndarray | None = None
    marked: np.ndarray | None = None
    owner: int = 0

    def partition_labels(self) -> np.ndarray:
        return self.original_y.numpy()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        from unlearning_verify.deletion import markers_of

        rates = []
        for m in markers_of(self.watermark):
            keep = self.y_test != m.target
            rates.append(float((self.predict(model, m.trigger(self.x_test[keep])) == m.target).float().mean()))
        clean = self.predict(model, self.x_test)
        return {"main_accuracy": float((clean == self.y_test).float().mean()),
                "attack_success_rate": float(np.mean(rates))}

    def owner_genuine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The owner's unmarked samples (for the membership check)."""
        rows = torch.as_tensor((self.owner_of == self.owner) & ~self.marked)
        return self.x_train[rows], self.y_train[rows]


def make_task(x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor,
              cfg: ExperimentConfig) -> WatermarkTask:
    """Mark the owner client's shard of (x, y) with its key-derived watermark (key seeded by ``cfg.seed``)."""
    wcfg = from_dict(WatermarkTaskConfig, cfg.task.params, source="task.params")
    fed = cfg.federation
    if not 0 <= wcfg.owner < fed.num_clients:
        raise InputError(f"task.params.owner must lie in 0..{fed.num_clients - 1}, got {wcfg.owner}")
    num_classes = int(max(y.max(), yt.max())) + 1
    wm = build(OwnerKey.generate(wcfg.owner, wcfg.family, num_classes, seed=cfg.seed), tuple(x.shape[1:]),
               **wcfg.family_params)
    owner_of = np.empty(len(y), dtype=np.int64)
    for c, rows in enumerate(split(y.numpy(), fed.num_clients, fed.partition, fed.dirichlet_alpha, cfg.seed)):
        owner_of[rows] = c
    marked = mark(x, y, owner_of, wcfg.owner, wm, wcfg.rate, cfg.seed)
    return WatermarkTask(marked.x, marked.y, xt, yt, num_classes=num_classes, watermark=wm, original_y=y,
                         owner_of=owner_of, marked=marked.marked, owner=wcfg.owner)
