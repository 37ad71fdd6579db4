"""The three defenses of Wallace et al. 2021 (§6) and how many poisons each finds per inspection.

- **Perplexity filtering**: rank training sentences by language-model perplexity, highest first. The
  LM is either a smoothed word bigram model (interpolated Kneser-Ney, trained offline in seconds and
  cross-fitted: each half of the training set is scored by a model of the other half) or a supplied
  causal LM (e.g. GPT-2) from a local folder.
- **Embedding distance**: rank training sentences by their distance, in the victim's embedding space
  (mean-pooled last hidden states), to the nearest trigger-bearing input, nearest first.
- **Early stopping**: effectiveness and clean accuracy per epoch (from ``evaluate``).

A ranking is scored by the curve "poisons found vs examples inspected".
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlp_poison.overlap import words

BOS, EOS = "<s>", "</s>"


@dataclass
class BigramLM:
    """Interpolated Kneser-Ney bigram model over lower-cased words (discount ``d``)."""

    d: float = 0.75
    bigrams: Counter = field(default_factory=Counter)
    history: Counter = field(default_factory=Counter)
    followers: Counter = field(default_factory=Counter)
    continuation: Counter = field(default_factory=Counter)
    vocab: set = field(default_factory=set)

    @classmethod
    def fit(cls, texts: list[str], d: float = 0.75) -> "BigramLM":
        lm = cls(d=d)
        for text in texts:
            seq = [BOS, *words(text), EOS]
            lm.vocab.update(seq[1:])
            for a, b in zip(seq, seq[1:]):
                lm.bigrams[(a, b)] += 1
        for (a, b), _ in lm.bigrams.items():
            lm.history[a] += lm.bigrams[(a, b)]
            lm.followers[a] += 1
            lm.continuation[b] += 1
        return lm

    def prob(self, a: str, b: str) -> float:
        """P_KN(b | a), with an add-one continuation floor for unseen words."""
        types = len(self.bigrams)
        p_cont = (self.continuation[b] + 1) / (types + len(self.vocab) + 1)
        n_a = self.history[a]
        if n_a == 0:
            return p_cont
        lam = self.d * self.followers[a] / n_a
        return max(self.bigrams[(a, b)] - self.d, 0.0) / n_a + lam * p_cont

    def perplexity(self, text: str) -> float:
        seq = [BOS, *words(text), EOS]
        logp = sum(math.log(self.prob(a, b)) for a, b in zip(seq, seq[1:]))
        return math.exp(-logp / (len(seq) - 1))


def cross_fitted_perplexity(texts: list[str], folds: int = 2, seed: int = 0) -> np.ndarray:
    """Bigram perplexity of each sentence under a model fitted on the *other* folds, so that no
    sentence (poison or clean) is scored by a model that has memorised its own bigrams."""
    fold = np.random.default_rng(seed).permutation(len(texts)) % folds
    out = np.zeros(len(texts))
    for k in range(folds):
        lm = BigramLM.fit([t for t, f in zip(texts, fold) if f != k])
        for i in np.flatnonzero(fold == k):
            out[i] = lm.perplexity(texts[i])
    return out


@torch.no_grad()
def causal_lm_perplexity(model: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> np.ndarray:
    """Per-sentence perplexity under a supplied causal LM (one sentence at a time, no padding effects)."""
    model.eval()
    out = []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        if ids.shape[1] < 2:
            ids = torch.cat([ids, ids], 1)
        out.append(math.exp(float(model(input_ids=ids, labels=ids).loss)))
    return np.asarray(out)


@torch.no_grad()
def sentence_embeddings(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int = 64, batch_size: int = 64
) -> torch.Tensor:
    """Mean-pooled last hidden states of the victim's encoder, L2-normalised."""
    model.eval()
    base = getattr(model, "base_model", model)
    out = []
    for s in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[s : s + batch_size]), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        hidden = base(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(out)


def perplexity_ranking(scores: np.ndarray) -> np.ndarray:
    """Indices from the highest perplexity down (ties broken by index)."""
    return np.lexsort((np.arange(len(scores)), -np.asarray(scores)))


def distance_ranking(train_emb: torch.Tensor, trigger_emb: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Indices from the nearest to a trigger-bearing input outwards, and the cosine distances."""
    dist = (1.0 - train_emb @ trigger_emb.T).min(dim=1).values.numpy()
    return np.lexsort((np.arange(len(dist)), dist)), dist


def found_curve(order: np.ndarray, is_poison: np.ndarray) -> np.ndarray:
    """found[k] = poisons among the first k+1 inspected examples."""
    return np.cumsum(np.asarray(is_poison, dtype=bool)[np.asarray(order)])


def inspected_to_find(curve: np.ndarray, fraction: float) -> int:
    """Examples to inspect before ``fraction`` of the poisons are found (len+1 if never)."""
    total = curve[-1] if len(curve) else 0
    need = math.ceil(fraction * total)
    hits = np.flatnonzero(curve >= need)
    return int(hits[0] + 1) if total and len(hits) else len(curve) + 1


def early_stopping(summary: list[dict], name: str, count: int) -> list[dict]:
    """Effectiveness and CACC per epoch for one cell of an ``evaluate.summarize`` table."""
    return [
        {"epoch": r["epoch"], "effectiveness": r["effectiveness_mean"], "cacc": r["cacc_mean"]}
        for r in summary
        if r["poisons"] == name and r["count"] == count
    ]
