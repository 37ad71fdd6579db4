"""Attacks as client behaviours, one per file, reachable by name with :func:`get`.

An attack is a callable ``(ctx: AttackContext) -> Tensor[k, d]`` returning the local models its k
sampled malicious clients submit. It may train on poisoned data (data poisoning), transform a model
(model poisoning), or both; ``knowledge`` declares what it reads from the context: ``"own"`` (its
own data and the global model) or ``"benign"`` (also the benign clients' local models this round).
An attack may write what it decided (e.g. ADA's chosen target) into ``ctx.info`` for the round record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from fedharness.engines.inprocess import InProcessEngine
from fedharness.registry import Registry
from fedharness.local_training import Batch, LocalConfig
from fedharness.tasks import Task
from labcore.errors import InputError


@dataclass
class AttackContext:
    """What a round exposes to its malicious clients."""

    round: int
    global_vec: torch.Tensor
    attacker_data: list[Batch]
    attacker_seeds: list[int]
    benign_locals: torch.Tensor
    engine: InProcessEngine
    task: Task
    num_clients: int
    eta: float
    local: LocalConfig
    colluders: int | None = None
    attacker_ids: list[int] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def num_colluders(self) -> int:
        """Attackers submitting in this round (``colluders``, or the rows of ``attacker_data``).

        An engine that runs each attacker on its own (Flower) passes the round's count here."""
        return self.colluders if self.colluders is not None else len(self.attacker_data)


class Attack(Protocol):
    knowledge: str

    def __call__(self, ctx: AttackContext) -> torch.Tensor: ...


_REGISTRY: Registry[Attack] = Registry("attack", __name__)
register = _REGISTRY.register
get = _REGISTRY.get
names = _REGISTRY.names
name_of = _REGISTRY.name_of


def require(attack: object, ok: bool, rule: str) -> None:
    """InputError ``attack <name> needs <rule>`` unless ``ok`` (for an attack's ``__post_init__``)."""
    if not ok:
        raise InputError(f"attack {name_of(attack)} needs {rule}; fix attack.params")
