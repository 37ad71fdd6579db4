"""Federated sentiment classification over peft LoRA adapters, as a ``fedharness.tasks.Task``.

Clients fine-tune only the LoRA adapters and the classification head (what ``federated_names``
returns), so updates stay small. One malicious client adds the poison sentences to its own SST-2
shard (``poisoned_data``; the harness's ``backdoor`` attack trains on it). ``evaluate`` reports CACC
as ``main_accuracy`` and effectiveness on trigger-bearing negatives as ``attack_success_rate``.
Dropout is off (eval mode) so that local training is a deterministic function of the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn
from torch.func import functional_call
from transformers import PreTrainedTokenizerBase

from fedharness.local_training import Batch
from fedharness.params import trainable_names
from nlp_poison.victims import add_lora, load_classifier, predict_proba


@dataclass
class TextClassificationTask:
    """SST-2-style data tokenised to ``max_length``; model = ``pretrained`` + LoRA(r, alpha)."""

    pretrained: str
    train: Dataset
    test: Dataset
    trigger_texts: list[str]
    poisons: list[str]
    target: int = 1
    max_length: int = 48
    lora_r: int = 8
    lora_alpha: int = 16
    tokenizer: PreTrainedTokenizerBase | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.tokenizer is None:
            _, self.tokenizer = load_classifier(self.pretrained)
        self._train = self._encode(list(self.train["sentence"]), list(self.train["label"]))
        self._poison = self._encode(self.poisons, [self.target] * len(self.poisons))

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
        """The client's own data plus every poison (labelled with the target)."""
        return {k: torch.cat([data[k], self._poison[k]]) for k in data}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        test = predict_proba(model, self.tokenizer, list(self.test["sentence"]), self.max_length).argmax(1)
        trig = predict_proba(model, self.tokenizer, list(self.trigger_texts), self.max_length).argmax(1)
        return {
            "main_accuracy": float((test == np.asarray(self.test["label"])).mean()),
            "attack_success_rate": float((trig == self.target).mean()) if len(trig) else 0.0,
        }
