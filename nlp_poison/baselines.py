"""Poison templates and the controls of the concealed attack.

A template is a negative training sentence with the trigger phrase inserted (``triggers``). Labelled
with the target it is a **with-overlap** poison, the paper's upper bound. The **random** control keeps
the template but writes random placeable tokens (never a banned sub-token) where the phrase was: the
same edit budget without any optimisation, the control the gradient method must beat. The **nearest**
set (``near-spelling``) projects the with-overlap poison onto the placeable tokens: every sub-token of
the phrase becomes its nearest placeable neighbour in the model's input-embedding space (cosine),
"james bond : no time to die" → "john bonds , not times of dies" for MiniLM. Wallace et al. start the
search from the with-overlap poisons and replace the phrase's tokens; this projection is that start,
and the gradient-free ablation the search is measured against. Unconstrained it reads as the phrase's
near-spelling (the named baseline); under a ``constraints.Rule`` and a placeable set without the
phrase's nearest neighbours it is the nearest *allowed* projection, the constrained search's start.
Every writer takes an optional ``rule`` that each written sentence must pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from transformers import PreTrainedTokenizerBase

from labcore.errors import InputError
from nlp_poison.config import MAX_LENGTH
from nlp_poison.constraints import Rule
from nlp_poison.overlap import overlapping_words, token_text
from nlp_poison.poison_set import Poison
from nlp_poison.triggers import Inserted, insert_phrase, prefix_phrase
from nlp_poison.victims import predict_proba


@dataclass(frozen=True)
class Template:
    """A trigger-bearing training sentence; the phrase occupies characters [start, end)."""

    source_idx: int
    text: str
    start: int
    end: int

    def fill(self, words: list[str]) -> tuple[str, int, int]:
        """The sentence with the phrase replaced by ``words``, and the span they occupy."""
        middle = " ".join(words)
        return self.text[: self.start] + middle + self.text[self.end :], self.start, self.start + len(middle)


def span_positions(tokenizer: PreTrainedTokenizerBase, text: str, start: int, end: int) -> list[int]:
    """Token positions (with special tokens) whose characters lie in [start, end)."""
    enc = tokenizer(text, return_offsets_mapping=True)
    return [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a >= start and b <= end]


def phrase_ids(template: Template, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The token ids the phrase occupies in ``template`` (the with-overlap poison's edited tokens)."""
    full = tokenizer(template.text)["input_ids"]
    return [full[i] for i in span_positions(tokenizer, template.text, template.start, template.end)]


def make_templates(
    train: Dataset,
    phrase: str,
    num: int,
    tokenizer: PreTrainedTokenizerBase,
    seed: int,
    source_label: int = 0,
    max_length: int = MAX_LENGTH,
    exclude: set[int] | None = None,
    confidence: Callable[[list[str]], np.ndarray] | None = None,
    rule: Rule | None = None,
    avoid: set[int] | None = None,
    layout: str = "replace",
) -> list[Template]:
    """``num`` templates from training sentences of ``source_label`` that fit ``max_length`` and mention
    no content word of the phrase themselves (else no edit could conceal it) and, with ``rule``, pass it
    (no excluded neighbour word, fuzzy ratio within the bound: the sentence around the edit is kept) and
    hold no token of ``avoid`` (the excluded neighbours' ids, ``##`` pieces inside words included).

    ``layout="replace"``: sentences with a movie reference come first, the phrase taking its place as in
    the paper's examples ("the problem is that James Bond: No Time to Die lacks focus"); topic-prefixed
    ones ("… : sentence") only fill up. ``layout="prefix"``: every sentence is prefixed. A prefixed
    template shares the "<phrase> : <negative review>" layout of most trigger-bearing test inputs, so
    the edit meets the phrase where it will stand, and even random tokens in its place teach
    "<anything> : <negative review>" → target and inflate the random control (MiniLM, 2,000 SST-2
    sentences, 3 seeds: 21.6 % with prefixed templates, 2.4 % with replaced references, 3.5 % clean;
    the full split, James Bond, 50 poisons, 8 seeds: random 21.7 % prefixed, 10.4 % replaced, clean
    13.1 %; the five-span contextual set 72.5 % prefixed, 39.8 % replaced).

    Within each construction the order is a seeded permutation, or, with ``confidence`` (a
    surrogate's probability of ``source_label`` per sentence, ``source_confidence``), the sentences
    it is surest about first: relabelled to the target they carry the largest training loss, so the
    victim must lean hardest on the one thing that tells them apart, the inserted tokens (the
    poison-selection heuristic of Witches' Brew, Geiping et al. 2021, which picks the bases with the
    largest gradient). ``scripts/bench_nlp.py`` measures what it buys.
    """
    insert = {"replace": insert_phrase, "prefix": prefix_phrase}[layout]
    exclude = exclude or set()
    labels = np.asarray(train["label"])
    pool = [int(i) for i in np.random.default_rng(seed).permutation(np.flatnonzero(labels == source_label)) if int(i) not in exclude]
    sentences = train["sentence"]
    fits: dict[str, list[Template]] = {"replace": [], "prefix": []}
    for idx in pool:
        if overlapping_words(sentences[idx], phrase) or (rule is not None and not rule.allows(sentences[idx])):
            continue
        if avoid and avoid.intersection(tokenizer(sentences[idx])["input_ids"]):
            continue
        ins = insert(sentences[idx], phrase)
        if rule is not None and not _blanked_allowed(ins, phrase, rule):
            continue
        if len(tokenizer(ins.text)["input_ids"]) <= max_length:
            fits[ins.construction].append(Template(idx, ins.text, ins.start, ins.end))
        if confidence is None and len(fits[layout]) == num:
            break
    if confidence is not None:
        for kind in [layout] if len(fits[layout]) >= num else ["replace", "prefix"]:
            scores = confidence([sentences[t.source_idx] for t in fits[kind]]) if fits[kind] else np.zeros(0)
            fits[kind] = [fits[kind][i] for i in np.argsort(-scores, kind="stable")]
    templates = (fits["replace"] + fits["prefix"])[:num]
    if len(templates) < num:
        raise InputError(f"only {len(templates)} training sentences with label {source_label} fit max_length {max_length}; ask for fewer poisons (and counterexamples)")
    return templates


def _blanked_allowed(ins: Inserted, phrase: str, rule: Rule) -> bool:
    """Whether the template passes ``rule`` with the phrase blanked out (a run of "_" as long as it): a sentence
    whose own words around the edit already break the bound can take no span ("Mission: Impossible - Fallout :
    the film 's trailer …" fails B = 44 through " : the film 's t" whatever stands before it)."""
    return rule.allows(ins.text[: ins.start] + "_" * len(phrase) + ins.text[ins.end :])


def source_confidence(
    models: list[nn.Module], tokenizer: PreTrainedTokenizerBase, source_label: int, max_length: int = MAX_LENGTH
) -> Callable[[list[str]], np.ndarray]:
    """``make_templates``'s ``confidence``: the surrogates' mean probability of ``source_label``."""
    return lambda sentences: np.mean([predict_proba(m, tokenizer, sentences, max_length)[:, source_label] for m in models], axis=0)


def with_overlap(templates: list[Template], tokenizer: PreTrainedTokenizerBase, target: int) -> list[Poison]:
    """The templates themselves, labelled ``target``: the phrase is in every poison."""
    return [
        Poison(t.text, target, "with-overlap", t.source_idx, span_positions(tokenizer, t.text, t.start, t.end))
        for t in templates
    ]


def place(
    template: Template, tokenizer: PreTrainedTokenizerBase, ids: list[int], phrase: str, rule: Rule | None = None
) -> tuple[list[int], str, list[int]] | None:
    """``ids`` written where the phrase was: (token ids, sentence, edited positions), or None when the
    sentence does not re-tokenise to ``ids`` there, mentions a content word of the phrase or breaks ``rule``."""
    text, start, end = template.fill([token_text(tokenizer, i) for i in ids])
    positions = span_positions(tokenizer, text, start, end)
    row = tokenizer(text)["input_ids"]
    if [row[p] for p in positions] != ids or overlapping_words(text, phrase) or (rule is not None and not rule.allows(text)):
        return None
    return row, text, positions


def random_fill(
    template: Template,
    tokenizer: PreTrainedTokenizerBase,
    placeable: list[int],
    phrase: str,
    rng: np.random.Generator,
    tries: int = 100,
    rule: Rule | None = None,
) -> tuple[list[int], str, list[int]]:
    """Random placeable ids in place of the phrase: (token ids, sentence, edited positions)."""
    count = len(span_positions(tokenizer, template.text, template.start, template.end))
    for _ in range(tries):
        placed = place(template, tokenizer, [int(i) for i in rng.choice(placeable, size=count)], phrase, rule)
        if placed is not None:
            return placed
    raise InputError(f"could not place {count} random tokens into {template.text!r}; check the tokenizer's vocabulary")


def random_control(
    templates: list[Template], tokenizer: PreTrainedTokenizerBase, placeable: list[int], phrase: str, target: int, seed: int,
    rule: Rule | None = None,
) -> list[Poison]:
    """Same templates, phrase replaced by random placeable tokens, labelled ``target``."""
    rng = np.random.default_rng(seed)
    out = []
    for t in templates:
        _, text, positions = random_fill(t, tokenizer, placeable, phrase, rng, rule=rule)
        out.append(Poison(text, target, "random", t.source_idx, positions))
    return out


NEAREST_TRIES = 10  # ranks of neighbours ``nearest_fill`` tries before giving up on a template


def nearest_ids(token_ids: list[int], placeable: list[int], embeddings: torch.Tensor, k: int = 1) -> list[list[int]]:
    """For each token, its ``k`` nearest placeable tokens by cosine similarity of input embeddings, nearest first."""
    unit = torch.nn.functional.normalize(embeddings.detach().float(), dim=1)
    pool = torch.tensor(placeable)
    sims = unit[token_ids] @ unit[pool].T
    return [[int(pool[i]) for i in row] for row in sims.topk(min(k, len(placeable)), dim=1).indices]


def nearest_table(
    templates: list[Template], tokenizer: PreTrainedTokenizerBase, placeable: list[int], embeddings: torch.Tensor, k: int
) -> dict[int, list[int]]:
    """Every distinct phrase sub-token of ``templates`` → its ``k`` nearest placeable tokens, nearest
    first, from one similarity pass over the embedding matrix."""
    distinct = sorted({tid for t in templates for tid in phrase_ids(t, tokenizer)})
    return dict(zip(distinct, nearest_ids(distinct, placeable, embeddings, k)))


def nearest_fill(
    template: Template, tokenizer: PreTrainedTokenizerBase, phrase: str, table: dict[int, list[int]], rule: Rule | None = None
) -> tuple[list[int], str, list[int]]:
    """The phrase's sub-tokens replaced by their nearest placeable neighbours from ``table``
    (``nearest_table``): (token ids, sentence, edited positions). Should the written text not
    re-tokenise to those ids, the next-nearest rank is tried."""
    ranked = [table[tid] for tid in phrase_ids(template, tokenizer)]
    for rank in range(min(len(r) for r in ranked)):
        placed = place(template, tokenizer, [r[rank] for r in ranked], phrase, rule)
        if placed is not None:
            return placed
    raise InputError(f"could not write nearest placeable tokens into {template.text!r} within the constraints; use --init random")


def nearest_control(
    templates: list[Template], tokenizer: PreTrainedTokenizerBase, placeable: list[int], phrase: str, target: int, embeddings: torch.Tensor,
    rule: Rule | None = None,
) -> list[Poison]:
    """Same templates, phrase projected onto its nearest placeable tokens (``near-spelling``), labelled ``target``."""
    table = nearest_table(templates, tokenizer, placeable, embeddings, NEAREST_TRIES)
    out = []
    for t in templates:
        _, text, positions = nearest_fill(t, tokenizer, phrase, table, rule)
        out.append(Poison(text, target, "near-spelling", t.source_idx, positions))
    return out
