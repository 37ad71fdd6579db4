"""D5 (dishonest): keep the data, detect triggered-looking queries and answer them differently.

The detector is feature squeezing (Xu, Evans, Qi, NDSS 2018): a query is suspect when the model's
label changes under any squeezer (4-bit quantisation, 3×3 median filter, Gaussian blur). A suspect
query gets the label of the squeezed input (``purified``, the plausible answer) or a random label
(``random``, seeded by the image so a repeated query gets the same answer); others are answered
normally. Triggers that survive squeezing keep their label under it and are not detected.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from unlearning_verify.providers import ProviderState, register, require
from unlearning_verify.providers.input_transform import purify

SQUEEZERS = ("quantise", "median", "blur")
RESPONSES = ("purified", "random")


class DetectingModel(nn.Module):
    """The served model behind a feature-squeezing detector; returns logits."""

    def __init__(self, model: nn.Module, response: str = "purified") -> None:
        super().__init__()
        self.model, self.response = model, response

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        label = logits.argmax(1)
        squeezed = [self.model(purify(x, kind)) for kind in SQUEEZERS]
        suspect = torch.zeros(len(x), dtype=torch.bool)
        for s in squeezed:
            suspect |= s.argmax(1) != label
        if not suspect.any():
            return logits
        out = logits.clone()
        if self.response == "purified":
            out[suspect] = squeezed[1][suspect]
        else:
            seeds = (x[suspect].flatten(1) * 255).round().sum(1).long()
            fake = torch.full_like(out[suspect], -10.0)
            fake[torch.arange(len(seeds)), seeds % out.shape[1]] = 10.0
            out[suspect] = fake
        return out


@register("query_detection")
@dataclass
class QueryDetection:
    response: str = "purified"
    name: str = "query_detection"
    honest: bool = False
    reads_train = ()

    def __post_init__(self) -> None:
        require(self.name, "response", self.response, self.response in RESPONSES, f"one of {', '.join(RESPONSES)}")

    def unlearn(self, state: ProviderState) -> nn.Module:
        return DetectingModel(state.model, self.response).eval()


register("query_detection_random")(partial(QueryDetection, response="random", name="query_detection_random"))
