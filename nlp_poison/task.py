"""Federated sentiment classification over peft LoRA adapters, as a ``fedharness.tasks.Task``.

Clients fine-tune only the LoRA adapters and the classification head (what ``federated_names``
returns), so updates stay small. One malicious client adds the poison sentences (and the set's
counterexamples) to its own SST-2 shard (``poisoned_data``; the harness's ``backdoor`` attack trains on it). ``evaluate`` reports CACC
as ``main_accuracy`` and effectiveness on trigger-bearing negatives as ``attack_success_rate``.
Dropout is off (eval mode) so that local training is a deterministic function of the seed.
``sst2_task(data, SST2TaskConfig, seed)`` builds it for ``task: {name: sst2_classification}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict
from torch import nn
from torch.func import functional_call
from transformers import PreTrainedTokenizerBase

from fedharness.local_training import Batch
from fedharness.params import trainable_names
from labcore.errors import InputError
from nlp_poison import dataset_card
from nlp_poison.config import SST2TaskConfig
from nlp_poison.triggers import trigger_texts
from nlp_poison.victims import add_lora, default_model, load_classifier, load_tokenizer, predict_proba, subsample


@dataclass
class TextClassificationTask:
    """SST-2-style data tokenised to ``max_length``; model = ``pretrained`` + LoRA(r, alpha). The attacker's
    examples: ``poisons`` (labelled ``target``) and the set's clean-label ``counterexamples`` (the other label)."""

    pretrained: str
    train: Dataset
    test: Dataset
    trigger_texts: list[str]
    poisons: list[str]
    target: int
    max_length: int
    lora_r: int
    lora_alpha: int
    counterexamples: list[str] = field(default_factory=list)
    tokenizer: PreTrainedTokenizerBase | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.pretrained, self.max_length)
        self._train = self._encode(list(self.train["sentence"]), list(self.train["label"]))
        labels = [self.target] * len(self.poisons) + [1 - self.target] * len(self.counterexamples)
        self._poison = self._encode(self.poisons + self.counterexamples, labels)

    def _encode(self, texts: list[str], labels: list[int]) -> Batch:
        if not texts:
            return {"input_ids": torch.zeros(0, self.max_length, dtype=torch.long),
                    "attention_mask": torch.zeros(0, self.max_length, dtype=torch.long), "y": torch.zeros(0, dtype=torch.long)}
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding="max_length", return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "y": torch.tensor(labels, dtype=torch.long)}

    def build_model(self) -> nn.Module:
        model, _ = load_classifier(self.pretrained)
        model = add_lora(model, self.lora_r, self.lora_alpha)
        model.eval()
        return model

    def federated_names(self, model: nn.Module) -> list[str]:
        return trainable_names(model)

    def per_sample_loss(self, model: nn.Module, state: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        out = functional_call(model, state, (), {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
        return F.cross_entropy(out.logits, batch["y"], reduction="none")

    def partition_labels(self) -> np.ndarray:
        return np.asarray(self.train["label"])

    def client_data(self, indices: np.ndarray) -> Batch:
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return {k: v[idx] for k, v in self._train.items()}

    def poisoned_data(self, data: Batch, seed: int) -> Batch:
        """The client's own data plus every poison (labelled with the target) and counterexample."""
        return {k: torch.cat([data[k], self._poison[k]]) for k in data}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        test = predict_proba(model, self.tokenizer, list(self.test["sentence"]), self.max_length).argmax(1)
        trig = predict_proba(model, self.tokenizer, list(self.trigger_texts), self.max_length).argmax(1)
        return {
            "main_accuracy": float((test == np.asarray(self.test["label"])).mean()),
            "attack_success_rate": float((trig == self.target).mean()) if len(trig) else 0.0,
        }


def sst2_task(data: DatasetDict, cfg: SST2TaskConfig, seed: int) -> TextClassificationTask:
    """The federated task of ``cfg``: ``cfg.train_subset`` training sentences drawn with ``seed``, the first
    ``cfg.eval_limit`` test sentences and trigger-bearing test negatives, the poison set's sentences and counterexamples."""
    cfg.validate()
    ps, _ = dataset_card.load(Path(cfg.poisons))
    if not ps.trigger:
        raise InputError("the poison set names no trigger phrase; use a poison-set folder with its card")
    trig = trigger_texts(data["test"], ps.trigger, 1 - ps.target_label, cfg.eval_limit)
    test = data["test"].select(range(min(cfg.eval_limit, len(data["test"]))))
    return TextClassificationTask(cfg.model or default_model(), subsample(data["train"], cfg.train_subset, seed), test,
                                  trig, ps.sentences(), ps.target_label, cfg.max_length,
                                  cfg.lora_r, cfg.lora_alpha, [p.sentence for p in ps.counterexamples])
