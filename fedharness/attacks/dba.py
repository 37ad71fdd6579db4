"""Distributed backdoor attack, DBA (Xie et al., "DBA: Distributed Backdoor Attacks against FL", ICLR 2020).

The global pixel trigger is cut into ``parts`` local triggers (vertical strips of its mask); colluding
attacker with client id j trains with local trigger j mod ``parts`` only. At test time the full trigger is used
(``task.evaluate``), which the pieces jointly implant. ``gamma`` optionally scales each update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.attacks import AttackContext, register, require
from fedharness.config import positive
from fedharness.attacks.backdoor import Backdoor
from fedharness.attacks.model_replacement import replace
from fedharness.attacks.pixel_backdoor import PixelPattern, poison
from labcore.errors import InputError
from fedharness.local_training import LocalConfig


@dataclass(frozen=True)
class LocalTrigger:
    """Piece ``part`` of ``parts`` of a global :class:`PixelPattern` (its columns cut evenly)."""

    pattern: PixelPattern
    part: int
    parts: int

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        mask, pattern = self.pattern.mask_and_pattern(images.shape[-2], images.shape[-1])
        cols = torch.nonzero(mask.any(dim=0)).flatten()
        keep = cols.tensor_split(self.parts)[self.part]
        piece = torch.zeros_like(mask)
        piece[:, keep] = mask[:, keep]
        piece, pattern = piece.to(images), pattern.to(images)
        return images * (1 - piece) + pattern * piece


@register("dba")
@dataclass
class DistributedBackdoor(Backdoor):
    """Each attacker poisons with its own piece of the task's trigger."""

    parts: int = 2
    gamma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, self.parts >= 1 and positive(self.gamma),
                f"parts >= 1 and a finite gamma > 0, got parts={self.parts}, gamma={self.gamma}")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        trigger = getattr(ctx.task, "trigger", None)
        if not isinstance(trigger, PixelPattern):
            raise InputError("dba needs a task with a pixel-pattern trigger (task.trigger)")
        if self.parts < 1 or self.parts > trigger.size:
            raise InputError(f"dba parts must be between 1 and the trigger size {trigger.size}")
        cfg = LocalConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)
        data = []
        ids = ctx.attacker_ids or list(range(len(ctx.attacker_data)))
        for j, d, s in zip(ids, ctx.attacker_data, ctx.attacker_seeds):
            local = LocalTrigger(trigger, j % self.parts, self.parts)
            x, y = poison(d["x"], d["y"], local, ctx.task.target_label, ctx.task.poison_fraction, s)
            data.append({"x": x, "y": y})
        trained = ctx.engine.train(ctx.global_vec, data, cfg, ctx.attacker_seeds)
        return replace(trained, ctx.global_vec, self.gamma)
