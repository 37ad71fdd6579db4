"""Aggregators: plain callables over a stack of client updates.

An aggregator takes ``updates`` of shape (m, d) (one row per client, Lᵢ − G) and keyword context,
and returns the aggregated update of shape (d,). Pre-aggregators (clipping, bucketing, NNM) map
(m, d) → (m', d) through ``transform`` and compose in front of one aggregator with :func:`compose`.

Context keys the simulation passes: ``global_vec``, ``client_ids``, ``seed``, ``round_index``, and
when a rule lists them in its ``needs``: ``root_update`` (FLTrust) and ``validate`` (validation
testing). Every rule drops NaN/Inf rows first and counts them in ``stats["rejected_nonfinite"]``;
rules that pick rows note them in ``stats["accepted_rows"]``.

``get(name, **params)`` builds a registered rule by name for configs and scripts.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch

from fedharness.errors import InputError


class Aggregator(Protocol):
    def __call__(self, updates: torch.Tensor, **context: object) -> torch.Tensor: ...


class PreAggregator(Protocol):
    def transform(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor: ...


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


def needs(rule: object) -> frozenset[str]:
    """Extra context a rule asks the server for (e.g. ``root_update``, ``validate``)."""
    return frozenset(getattr(rule, "needs", ()))


class Pipeline:
    """Pre-aggregators applied in order, then one aggregator (ByzFL-style composition)."""

    def __init__(self, pre: list[PreAggregator], aggregator: Aggregator) -> None:
        for stage in pre:
            if not hasattr(stage, "transform"):
                raise InputError(f"{type(stage).__name__} is not a pre-aggregator; use norm_clip, bucketing or nnm")
        self.pre = pre
        self.aggregator = aggregator
        self.needs = frozenset().union(*(needs(s) for s in [*pre, aggregator]))

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        from fedharness.aggregators._finite import split_finite

        u, rows = split_finite(updates, stats)
        mixed = False
        for stage in self.pre:
            u = stage.transform(u, stats=stats, **context)
            mixed = mixed or bool(getattr(stage, "mixes_rows", False))
        inner: dict = {}
        out = self.aggregator(u, stats=inner, **context)
        if stats is not None:
            inner.pop("rejected_nonfinite", None)
            accepted = inner.pop("accepted_rows", None)
            if accepted is not None and not mixed:
                stats["accepted_rows"] = sorted(rows[i] for i in accepted)
            stats.update(inner)
        return out


def compose(*stages: object) -> Aggregator:
    """``compose(pre₁, …, preₖ, aggregator)``: the pre-aggregators' output feeds the aggregator."""
    if not stages:
        raise InputError("compose needs at least an aggregator")
    if len(stages) == 1:
        return stages[0]  # type: ignore[return-value]
    return Pipeline(list(stages[:-1]), stages[-1])  # type: ignore[arg-type]


def _load_builtin() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


__all__ = ["Aggregator", "Pipeline", "PreAggregator", "compose", "get", "names", "needs", "register"]
