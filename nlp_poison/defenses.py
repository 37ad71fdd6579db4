"""The three defenses of Wallace et al. 2021 (§6) and how many poisons each finds per inspection.

- **Perplexity filtering**: rank training sentences by language-model perplexity, highest first. The
  LM is either a smoothed word bigram model (interpolated Kneser-Ney, trained offline in seconds and
  cross-fitted: each half of the training set is scored by a model of the other half) or a supplied
  causal LM (e.g. GPT-2) from a local folder.
- **Embedding distance**: rank training sentences by their distance, in the victim's embedding space
  (mean-pooled last hidden states), to the nearest trigger-bearing input, nearest first.
- **Early stopping**: effectiveness and clean accuracy per epoch (from ``evaluate``).

A ranking is scored by the curve "poisons found vs examples inspected". Entry point:
``defend(data, DefendConfig) -> DefenseResult``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from datasets import DatasetDict

from labcore.errors import InputError
from nlp_poison import dataset_card
from nlp_poison.config import MAX_LENGTH, DefendConfig
from nlp_poison.evaluate import evaluation_summary, training_set
from nlp_poison.overlap import words
from nlp_poison.triggers import trigger_texts
from nlp_poison.victims import load_classifier, subsample

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
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int = MAX_LENGTH, batch_size: int = 64
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


@dataclass
class DefenseResult:
    """Poisons found vs examples inspected per ranking, and the early-stopping table (None without it)."""

    curves: dict[str, np.ndarray]
    num_training: int
    num_poisons: int
    early: list[dict] | None = None

    def metrics(self) -> dict:
        out: dict = {
            name: {f"inspected_for_{int(f * 100)}pct": inspected_to_find(c, f) for f in (0.5, 0.9, 1.0)}
            | {"found_in_first_100": int(c[min(99, len(c) - 1)])}
            for name, c in self.curves.items()
        }
        out["num_training"], out["num_poisons"] = self.num_training, self.num_poisons
        if self.early is not None:
            out["early_stopping"] = self.early
        return out


def _perplexities(texts: list[str], cfg: DefendConfig) -> np.ndarray:
    if cfg.lm is None:
        return cross_fitted_perplexity(texts, seed=cfg.seed)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    fix = "pass a local causal LM folder (e.g. GPT-2 saved with save_pretrained) or drop --lm for the bigram model"
    try:
        architectures = AutoConfig.from_pretrained(cfg.lm).architectures or []
        causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
        lm, tokenizer = (AutoModelForCausalLM.from_pretrained(cfg.lm), AutoTokenizer.from_pretrained(cfg.lm)) if causal else (None, None)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load causal LM {cfg.lm!r} ({exc.__class__.__name__}); {fix}") from None
    if lm is None:
        raise InputError(f"--lm {cfg.lm} holds a {', '.join(architectures) or 'model of no declared architecture'}, "
                         f"not a causal LM (its head would be drawn at random); {fix}")
    return causal_lm_perplexity(lm, tokenizer, texts)


def defend(data: DatasetDict, cfg: DefendConfig) -> DefenseResult:
    """Rank the training set poisoned with ``cfg.poisons`` by perplexity and by embedding distance to the
    trigger-bearing validation negatives under ``cfg.victim``; the early-stopping table from the ``nlp
    evaluate`` run ``cfg.evaluation``, read first so that a wrong folder costs no work."""
    summary = evaluation_summary(cfg.evaluation) if cfg.evaluation is not None else None
    ps, _ = dataset_card.load(Path(cfg.poisons))
    phrase = cfg.trigger or ps.trigger
    if not phrase:
        raise InputError("the poison set names no trigger phrase; pass --trigger")
    clf, tok = load_classifier(cfg.victim)
    clean = subsample(data["train"], cfg.train_subset, cfg.seed)
    texts = list(training_set(clean, ps.rows())["sentence"])
    is_poison = np.zeros(len(texts), dtype=bool)
    is_poison[len(clean) : len(clean) + len(ps.poisons)] = True  # the counterexamples after them are no poisons
    ppl = _perplexities(texts, cfg)
    trig = trigger_texts(data["validation"], phrase, 1 - ps.target_label)
    order_d, _ = distance_ranking(sentence_embeddings(clf, tok, texts, cfg.max_length), sentence_embeddings(clf, tok, trig, cfg.max_length))
    curves = {"perplexity": found_curve(perplexity_ranking(ppl), is_poison), "embedding distance": found_curve(order_d, is_poison)}
    early = early_stopping(summary, ps.method, len(ps.poisons)) if summary is not None else None
    return DefenseResult(curves, len(texts), int(is_poison.sum()), early)
