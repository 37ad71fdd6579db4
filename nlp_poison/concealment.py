"""Concealment figures of a poison set: how close it reads to the phrase, and what a curator finds.

Similarity (``constraints``): the poisons' fuzzy-match ratio to the phrase (max and mean) and, per
anchor sub-token of the phrase, the best neighbour rank of any edited token and of any token.

Detection: a curator who knows the phrase ranks the training set (clean sentences plus the poisons)
and inspects it from the top; each filter is scored by poisons found vs examples inspected (Wallace et
al. 2021, §6), in the first ``inspected`` examples and until half / all poisons are found:

- (a) ``fuzzy``: highest fuzzy-match ratio to the phrase first;
- (b) ``neighbours``: sentences holding a token nearest to a sub-token of the phrase (smallest rank in
  the input-embedding space) first; ``flagged_within_k`` adds the plain filter, the sentences holding
  one of the ``CURATOR_K`` nearest (examples flagged, poisons among them). The ranking is the stricter
  curator: tokens just outside an excluded radius still rank right after the flagged sentences;
- (c) the paper's defenses from ``defenses``: ``perplexity`` (cross-fitted bigram LM, highest first) and
  ``embedding distance`` (nearest to a trigger-bearing input under ``encoder``, nearest first).
  Early stopping, the third, needs fine-tuned victims: ``poisonlab nlp defend --evaluation``.

Ties are broken by a seeded permutation, so poisons appended after the clean sentences gain nothing
from the order. A smaller clean pool is the harder case for the poisons (fewer clean sentences to
hide among), so figures on a pool are an upper bound on the full training set's.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from labcore.errors import InputError
from nlp_poison.constraints import NeighbourIndex, fuzzy_ratio
from nlp_poison.defenses import cross_fitted_perplexity, distance_ranking, found_curve, inspected_to_find, sentence_embeddings
from nlp_poison.poison_set import Poison

INSPECTED = 500
"""Examples a curator inspects, for the ``found_in_first`` figure (the issue's acceptance reads 500)."""
CURATOR_K = 50
"""Nearest embedding neighbours of each phrase sub-token the plain neighbour filter searches for."""


def similarity(poisons: list[Poison], phrase: str, tokenizer: PreTrainedTokenizerBase, index: NeighbourIndex) -> dict:
    """Fuzzy ratio (max, mean over poisons) and per anchor the best rank of an edited token and of any token."""
    ratios = [fuzzy_ratio(p.sentence, phrase) for p in poisons]
    rows = [tokenizer(p.sentence)["input_ids"] for p in poisons]
    edited = [r[i] for r, p in zip(rows, poisons) for i in p.edited_positions if i < len(r)]
    anywhere = [i for r in rows for i in r]
    best_edited, best_any = index.best_rank(edited).tolist(), index.best_rank(anywhere).tolist()
    return {
        "fuzzy_ratio": {"max": max(ratios), "mean": float(np.mean(ratios))},
        "embedding_rank": {lab: {"edited": int(e), "any_token": int(a)} for lab, e, a in zip(index.labels, best_edited, best_any)},
    }


def _order(primary: np.ndarray, seed: int) -> np.ndarray:
    """Indices by ``primary`` ascending, ties in a seeded random order."""
    return np.lexsort((np.random.default_rng(seed).random(len(primary)), primary))


def neighbour_scores(texts: list[str], tokenizer: PreTrainedTokenizerBase, index: NeighbourIndex) -> np.ndarray:
    """Per sentence, the smallest neighbour rank of any of its tokens to any anchor."""
    best = index.ranks.min(dim=0).values.numpy()
    rows = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return np.asarray([best[r].min() if r else best.max() for r in rows])


def curator_bounds(texts: list[str], phrase: str, tokenizer: PreTrainedTokenizerBase, index: NeighbourIndex, hide_below: int) -> tuple[int, float]:
    """The neighbour radius K and fuzzy bound B that rank every poison below the first ``hide_below`` of the clean
    ``texts`` for filters (a) and (b): K is the ``hide_below``-th smallest neighbour score of a clean sentence (a poison
    with no token within K scores more than it), B the largest clean fuzzy ratio strictly below the ``hide_below``-th
    largest, floored to 0.1 (a poison at B ties only with clean sentences ranked after it). Clean sentences are where
    a curator's ranking is calibrated: a poison that reads no closer to the phrase than they do is ranked among them."""
    if not 1 <= hide_below <= len(texts):
        raise InputError(f"hide_below must be between 1 and the {len(texts)} clean training sentences, got {hide_below}")
    k = int(np.sort(neighbour_scores(texts, tokenizer, index))[hide_below - 1])
    ratios = np.asarray([fuzzy_ratio(t, phrase) for t in texts])
    level = np.sort(ratios)[::-1][hide_below - 1]
    below = ratios[ratios < level]
    bound = math.floor(10 * float(below.max())) / 10 if below.size else 0.0
    return k, bound


Embedder = Callable[[list[str]], torch.Tensor]


class CachedEmbedder:
    """``sentence_embeddings`` under ``encoder``, each distinct sentence computed once (in length order, so
    batches carry little padding): sets measured against the same clean pool and trigger-bearing inputs
    pay for those once."""

    def __init__(self, encoder: nn.Module, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        self.encoder, self.tokenizer, self.max_length = encoder, tokenizer, max_length
        self.seen: dict[str, torch.Tensor] = {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        new = sorted((t for t in dict.fromkeys(texts) if t not in self.seen), key=len)
        if new:
            self.seen.update(zip(new, sentence_embeddings(self.encoder, self.tokenizer, new, self.max_length)))
        return torch.stack([self.seen[t] for t in texts])


def rankings(texts: list[str], phrase: str, near: np.ndarray, embed: Embedder, trigger_texts: list[str], seed: int) -> dict[str, np.ndarray]:
    """Inspection order of each curator filter over ``texts`` (``near``: their ``neighbour_scores``; ``embed``:
    the encoder's sentence embeddings)."""
    fuzzy = np.asarray([fuzzy_ratio(t, phrase) for t in texts])
    ppl = cross_fitted_perplexity(texts, seed=seed)
    dist = distance_ranking(embed(texts), embed(trigger_texts))[1]
    return {
        "fuzzy": _order(-fuzzy, seed),
        "neighbours": _order(near, seed),
        "perplexity": _order(-ppl, seed),
        "embedding distance": _order(dist, seed),
    }


def detection(orders: dict[str, np.ndarray], is_poison: np.ndarray, inspected: int = INSPECTED) -> dict:
    """Per filter: poisons found among the first ``inspected`` examples (count and fraction of the poisons)
    and the examples inspected until half and all of them are found."""
    out = {}
    total = int(is_poison.sum())
    for name, order in orders.items():
        curve = found_curve(order, is_poison)
        found = int(curve[min(inspected, len(curve)) - 1])
        out[name] = {f"found_in_first_{inspected}": found, f"found_fraction_first_{inspected}": found / total if total else 0.0,
                     "inspected_for_50pct": inspected_to_find(curve, 0.5), "inspected_for_100pct": inspected_to_find(curve, 1.0)}
    return out


def measure(poisons: list[Poison], phrase: str, tokenizer: PreTrainedTokenizerBase, index: NeighbourIndex, encoder: nn.Module | Embedder,
            clean_texts: list[str], trigger_texts: list[str], max_length: int, seed: int, inspected: int = INSPECTED) -> dict:
    """The concealment figures of ``poisons`` among ``clean_texts`` (the card's and metrics.json's ``concealment``);
    ``encoder`` is the model of the embedding-distance filter or a ``CachedEmbedder`` shared between sets."""
    texts = list(clean_texts) + [p.sentence for p in poisons]
    is_poison = np.arange(len(texts)) >= len(clean_texts)
    near = neighbour_scores(texts, tokenizer, index)
    embed = encoder if isinstance(encoder, CachedEmbedder) else CachedEmbedder(encoder, tokenizer, max_length)
    filters = detection(rankings(texts, phrase, near, embed, trigger_texts, seed), is_poison, inspected)
    flagged = near <= CURATOR_K
    filters["neighbours"]["flagged_within_k"] = {"k": CURATOR_K, "examples": int(flagged.sum()), "poisons": int(flagged[is_poison].sum())}
    return similarity(poisons, phrase, tokenizer, index) | {
        "detection": {"pool": len(texts), "poisons": len(poisons), "inspected": inspected, "filters": filters},
    }
