"""D1 (dishonest): ignore the deletion request and keep serving the same model."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from unlearning_verify.providers import ProviderState, register


@register("noop")
@dataclass
class NoOp:
    name: str = "noop"
    honest: bool = False
    reads_train = ()

    def unlearn(self, state: ProviderState) -> nn.Module:
        return state.model
