"""Simulated providers answering a deletion request, one behaviour per file (reference §3).

A provider receives the :class:`ProviderState` (training set, the owner's rows, the served model and
its per-epoch checkpoints) and returns the model it serves afterwards. ``honest`` is the ground truth
used to score verdicts: honest providers removed the owner's data (exactly or approximately).

A behaviour's parameters are its dataclass fields with a default (``name`` and ``honest`` aside); :func:`get`
parses each given value to its default's type and the dataclass's ``__post_init__`` checks its range
(:func:`require`). ``reads_train`` names the ``TrainConfig`` fields a behaviour uses (none by default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from fedharness.registry import Registry
from labcore.errors import InputError
from unlearning_verify.training import TrainConfig


@dataclass
class ProviderState:
    """What the provider holds when the request to delete the rows ``forget`` arrives.

    ``original_x``/``original_y``/``marked`` are the ground truth of the marking, given only to the
    adaptive dishonest providers that model a provider who found every marker (an upper bound on
    trigger reconstruction or sample detection)."""

    x: torch.Tensor
    y: torch.Tensor
    forget: np.ndarray
    model: nn.Module
    checkpoints: list[dict[str, torch.Tensor]]
    num_classes: int
    train_config: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    original_x: torch.Tensor | None = None
    original_y: torch.Tensor | None = None
    marked: np.ndarray | None = None

    def unmarked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole training set with every marker removed (originals, true labels): what an adaptive
        provider that found and undid the markers holds. Needs ``original_x``/``original_y``."""
        if self.original_x is None or self.original_y is None:
            raise InputError("this behaviour needs the unmarked originals (original_x, original_y) in the state")
        return self.original_x, self.original_y

    def retained(self) -> tuple[torch.Tensor, torch.Tensor]:
        keep = torch.as_tensor(~self.forget)
        return self.x[keep], self.y[keep]


class Provider(Protocol):
    name: str
    honest: bool
    reads_train: tuple[str, ...]

    def unlearn(self, state: ProviderState) -> nn.Module:
        """The model served after the deletion request."""


TRAIN_FIELDS = ("epochs", "lr", "batch_size", "schedule")  # what a behaviour that trains models reads
_REGISTRY: Registry[Provider] = Registry("provider behaviour", __name__)
register = _REGISTRY.register
names = _REGISTRY.names


def require(behaviour: str, param: str, value: object, ok: bool, need: str) -> None:
    """The one-line error for parameter ``param`` of ``behaviour`` out of range (``need`` says the range)."""
    if not ok:
        raise InputError(f"behaviour {behaviour}: parameter {param} must be {need}, got {value!r}")


def parameters(name: str) -> dict[str, object]:
    """The parameters of the registered behaviour ``name``, with their defaults (a ``partial``'s presets excluded)."""
    names()  # imports the package's modules
    factory = _REGISTRY.factories[name]
    preset = getattr(factory, "keywords", {})
    return {f.name: f.default for f in dataclasses.fields(getattr(factory, "func", factory))
            if f.init and f.name not in ("name", "honest", *preset) and f.default is not dataclasses.MISSING}


KIND_NAMES = {int: "an integer", float: "a number", str: "a non-empty word"}


def _parse(value: object, kind: type) -> object:
    """``value`` (a ``--param`` string or a YAML scalar) as ``kind``; ValueError if it is not one."""
    if isinstance(value, bool) or (kind is int and isinstance(value, float)):
        raise ValueError(value)
    if kind is str and not (isinstance(value, str) and value.strip()):
        raise ValueError(value)
    return kind(value.strip() if isinstance(value, str) else value)


def get(name: str, /, **params: object) -> Provider:
    """The behaviour ``name`` built with ``params``; unknown names, unknown parameters, values of the wrong
    type and values out of range are input errors naming the parameter."""
    if name not in names():
        return _REGISTRY.get(name)  # the registry's error naming every behaviour
    accepted = parameters(name)
    typed = {}
    for key, value in params.items():
        if key not in accepted:
            raise InputError(f"behaviour {name} has no parameter {key!r}; its parameters: {', '.join(accepted) or 'none'}")
        kind = type(accepted[key])
        try:
            typed[key] = _parse(value, kind)
        except (TypeError, ValueError):
            require(name, key, value, False, KIND_NAMES[kind])
    return _REGISTRY.factories[name](**typed)
