"""Aggregators: plain callables over a stack of client updates.

An aggregator takes ``updates`` of shape (m, d) (one row per client, Lᵢ − G) and keyword context,
and returns the aggregated update of shape (d,). Pre-aggregators (clipping, bucketing, NNM) map
(m, d) → (m', d) and compose in front of one aggregator with :func:`compose`.

``get(name, **params)`` builds a registered rule by name for configs and scripts.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch

from fedharness.errors import InputError


class Aggregator(Protocol):
    def __call__(self, updates: torch.Tensor, **context: object) -> torch.Tensor: ...


_REGISTRY: dict[str, Callable[..., Aggregator]] = {}


def register(name: str) -> Callable[[Callable[..., Aggregator]], Callable[..., Aggregator]]:
    """Class/function decorator adding a factory to the name registry."""

    def wrap(factory: Callable[..., Aggregator]) -> Callable[..., Aggregator]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def get(name: str, **params: object) -> Aggregator:
    """Build the aggregator registered as ``name`` with its parameters."""
    _load_builtin()
    if name not in _REGISTRY:
        raise InputError(f"unknown aggregator {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[name](**params)
    except TypeError as exc:
        raise InputError(f"bad parameters for aggregator {name!r}: {exc}") from None


def names() -> list[str]:
    """All registered aggregator names."""
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


__all__ = ["Aggregator", "get", "names", "register"]
