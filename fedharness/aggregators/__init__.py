"""Aggregators: plain callables over a stack of client updates.

An aggregator takes ``updates`` of shape (m, d) (one row per client, Lᵢ − G) and keyword context,
and returns the aggregated update of shape (d,). Pre-aggregators (clipping, bucketing, NNM) map
(m, d) → (m', d) through ``transform`` and compose in front of one aggregator with :func:`compose`.

Context keys the simulation passes: ``global_vec``, ``client_ids``, ``seed``, ``round_index``, and
when a rule lists them in its ``needs``: ``root_update`` (FLTrust) and ``validate`` (validation
testing). Every rule drops NaN/Inf rows first and counts them in ``stats["rejected_nonfinite"]``;
rules that pick rows note them in ``stats["accepted_rows"]``.

``get(name, **params)`` builds a registered rule by name for configs and scripts. Rules that carry
state between rounds (FoolsGold's client histories) expose ``state_dict``/``load_state_dict``;
:func:`state_dict` and :func:`load_state_dict` reach them through a pipeline, for checkpoints.
"""

from __future__ import annotations

from typing import Protocol

import torch

from labcore.errors import InputError
from fedharness.registry import Registry


class Aggregator(Protocol):
    def __call__(self, updates: torch.Tensor, **context: object) -> torch.Tensor: ...


class PreAggregator(Protocol):
    def transform(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor: ...


_REGISTRY: Registry[Aggregator] = Registry("aggregator", __name__)
register = _REGISTRY.register
get = _REGISTRY.get
names = _REGISTRY.names
name_of = _REGISTRY.name_of


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


def _stages(rule: object) -> list[object]:
    return [*rule.pre, rule.aggregator] if isinstance(rule, Pipeline) else [rule]


def state_dict(rule: object) -> dict[str, torch.Tensor]:
    """The tensors a rule carries between rounds, keyed ``<stage>.<name>``; empty for stateless rules."""
    return {f"{i}.{k}": v for i, stage in enumerate(_stages(rule)) if hasattr(stage, "state_dict")
            for k, v in stage.state_dict().items()}


def load_state_dict(rule: object, state: dict[str, torch.Tensor]) -> None:
    """Restore what :func:`state_dict` returned (a resumed run continues with the same histories)."""
    for i, stage in enumerate(_stages(rule)):
        if hasattr(stage, "load_state_dict"):
            prefix = f"{i}."
            stage.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


def check_rows(rule: object, m: int) -> None:
    """InputError when a stage of ``rule`` cannot aggregate the ``m`` updates of a round (Krum's and Bulyan's
    bounds on f); a stage with ``rows_out`` (bucketing) hands the next one fewer rows."""
    for stage in _stages(rule):
        if hasattr(stage, "check_rows"):
            stage.check_rows(m)
        m = stage.rows_out(m) if hasattr(stage, "rows_out") else m


def compose(*stages: object) -> Aggregator:
    """``compose(pre₁, …, preₖ, aggregator)``: the pre-aggregators' output feeds the aggregator, which must not
    be a ``pre_only`` stage (bucketing, NNM: alone they only average)."""
    if not stages:
        raise InputError("compose needs at least an aggregator")
    if getattr(stages[-1], "pre_only", False):
        raise InputError(f"{name_of(stages[-1])} is a pre-aggregator, not a defense on its own (it only averages); "
                         "list it under aggregator.pre in front of a rule such as median")
    if len(stages) == 1:
        return stages[0]  # type: ignore[return-value]
    return Pipeline(list(stages[:-1]), stages[-1])  # type: ignore[arg-type]


__all__ = [
    "Aggregator", "Pipeline", "PreAggregator", "check_rows", "compose", "get", "load_state_dict", "name_of", "names",
    "needs", "register", "state_dict",
]
