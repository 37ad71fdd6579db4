"""Label flipping (Biggio et al. 2012; Fang et al. 2020's baseline): train honestly on relabelled
own data — every label y → C − 1 − y, or only ``source`` → ``target``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.attacks import AttackContext, register
from labcore.errors import InputError
from fedharness.local_training import Batch


def flip_labels(y: torch.Tensor, num_classes: int, source: int | None, target: int | None) -> torch.Tensor:
    if source is None:
        return num_classes - 1 - y
    return torch.where(y == source, torch.full_like(y, target), y)


@register("label_flip")
@dataclass
class LabelFlip:
    """All labels reversed, or ``source`` relabelled ``target`` (both or neither)."""

    source: int | None = None
    target: int | None = None
    knowledge: str = "own"

    def __post_init__(self) -> None:
        if (self.source is None) != (self.target is None):
            raise InputError("label_flip needs both source and target, or neither (flip every label)")
        if self.source is not None and (min(self.source, self.target) < 0 or self.source == self.target):
            raise InputError(f"label_flip needs two different classes >= 0, got source={self.source}, target={self.target}")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        classes = int(getattr(ctx.task, "num_classes", 0)) or int(max(int(d["y"].max()) for d in ctx.attacker_data)) + 1
        data: list[Batch] = [{**d, "y": flip_labels(d["y"], classes, self.source, self.target)} for d in ctx.attacker_data]
        return ctx.engine.train(ctx.global_vec, data, ctx.local, ctx.attacker_seeds)
