"""Adaptive dishonest providers that remove the backdoor but keep the owner's data (reference §3 D4, D8).

Both are given the ground truth of the marking (which rows are marked, their originals and true
labels): an upper bound on what trigger reconstruction (Neural Cleanse, Wang et al., S&P 2019),
fine-pruning (Liu et al., RAID 2018) or a sample detector can find.

- ``trigger_unlearning``: Neural Cleanse's repair with the exact trigger: fine-tune the served model
  on the training set with every marked image relabelled to its true class (the trigger is
  "unlearned"), ``epochs`` epochs at a constant ``lr``.
- ``unmark_retrain``: retrain from scratch on the training set with every marker removed (originals,
  true labels): the owner's samples are all learned, no marker is.

The backdoor test cannot see either; the membership check on the owner's unmarked samples can.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from labcore.errors import InputError
from unlearning_verify.providers import TRAIN_FIELDS, ProviderState, register, require
from unlearning_verify.training import TrainConfig, fit, train


def true_labels(state: ProviderState) -> torch.Tensor:
    if state.marked is None:
        raise InputError("this behaviour needs the marking ground truth (state.marked)")
    _, original_y = state.unmarked()
    return original_y


@register("trigger_unlearning")
@dataclass
class TriggerUnlearning:
    epochs: int = 1
    lr: float = 1e-3
    name: str = "trigger_unlearning"
    honest: bool = False
    reads_train = ("batch_size",)

    def __post_init__(self) -> None:
        require(self.name, "epochs", self.epochs, self.epochs >= 1, "an integer ≥ 1")
        require(self.name, "lr", self.lr, math.isfinite(self.lr) and self.lr > 0, "a finite number > 0")

    def unlearn(self, state: ProviderState) -> nn.Module:
        model = copy.deepcopy(state.model)
        cfg = TrainConfig(self.epochs, self.lr, state.train_config.batch_size, schedule="constant")
        train(model, state.x, true_labels(state), cfg, state.seed + 8)
        return model.eval()


@register("unmark_retrain")
@dataclass
class UnmarkRetrain:
    name: str = "unmark_retrain"
    honest: bool = False
    reads_train = TRAIN_FIELDS

    def unlearn(self, state: ProviderState) -> nn.Module:
        true_labels(state)
        x, y = state.unmarked()
        return fit(x, y, state.num_classes, state.train_config, state.seed + 1)[0]
