"""Flatten a model's federated parameters to one fp32 vector and back.

Updates may cover the whole model or only its trainable subset (e.g. peft LoRA adapters): the
``names`` list fixes which parameters travel and in what order.
"""

from __future__ import annotations

import torch
from torch import nn


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the parameters that require grad, in module order (what a client sends)."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def get_vector(model: nn.Module, names: list[str]) -> torch.Tensor:
    """Concatenate the named parameters into one detached fp32 vector."""
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach().reshape(-1).float() for n in names])


def split_vector(vector: torch.Tensor, model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """Cut a flat vector into tensors shaped like the named parameters (views, no copy)."""
    params = dict(model.named_parameters())
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for n in names:
        p = params[n]
        out[n] = vector[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    if offset != vector.numel():
        raise ValueError(f"vector has {vector.numel()} entries, the named parameters {offset}")
    return out


@torch.no_grad()
def set_vector(model: nn.Module, names: list[str], vector: torch.Tensor) -> None:
    """Write a flat vector into the named parameters in place."""
    params = dict(model.named_parameters())
    for n, t in split_vector(vector, model, names).items():
        params[n].copy_(t.to(params[n].dtype))
