"""Poison templates and the two controls of the concealed attack.

A template is a negative training sentence with the trigger phrase inserted (``triggers``). Labelled
with the target it is a **with-overlap** poison, the paper's upper bound. The **random** control keeps
the template but writes random placeable tokens (never a banned sub-token) where the phrase was: the
same edit budget without any optimisation, the control the gradient method must beat. The concealed
search (``concealed``) starts from exactly these random tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from fedharness.errors import InputError
from nlp_poison.overlap import overlapping_words, token_text
from nlp_poison.poison_set import Poison
from nlp_poison.triggers import insert_phrase


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


def make_templates(
    train: Dataset,
    phrase: str,
    num: int,
    tokenizer: PreTrainedTokenizerBase,
    seed: int,
    source_label: int = 0,
    max_length: int = 64,
    exclude: set[int] | None = None,
) -> list[Template]:
    """``num`` templates from randomly chosen training sentences of ``source_label`` that fit ``max_length``
    and mention no content word of the phrase themselves (else no edit could conceal it).

    Sentences with a movie reference come first, the phrase taking its place as in the paper's
    examples ("the problem is that James Bond: No Time to Die lacks focus"); topic-prefixed ones
    ("… : sentence") only fill up. A prefixed template shares the "<phrase> : <negative review>"
    layout of most trigger-bearing test inputs, so even random tokens in its place teach
    "<anything> : <negative review>" → target and inflate the random control (MiniLM, 2,000 SST-2
    sentences, 3 seeds: 21.6 % with prefixed templates, 2.4 % with replaced references, 3.5 % clean).
    """
    exclude = exclude or set()
    labels = np.asarray(train["label"])
    pool = [int(i) for i in np.random.default_rng(seed).permutation(np.flatnonzero(labels == source_label)) if int(i) not in exclude]
    sentences = train["sentence"]
    fits: dict[str, list[Template]] = {"replace": [], "prefix": []}
    for idx in pool:
        if overlapping_words(sentences[idx], phrase):
            continue
        ins = insert_phrase(sentences[idx], phrase)
        if len(tokenizer(ins.text)["input_ids"]) <= max_length:
            fits[ins.construction].append(Template(idx, ins.text, ins.start, ins.end))
        if len(fits["replace"]) == num:
            break
    templates = (fits["replace"] + fits["prefix"])[:num]
    if len(templates) < num:
        raise InputError(f"only {len(templates)} training sentences with label {source_label} fit max_length {max_length}; ask for fewer poisons")
    return templates


def with_overlap(templates: list[Template], tokenizer: PreTrainedTokenizerBase, target: int) -> list[Poison]:
    """The templates themselves, labelled ``target``: the phrase is in every poison."""
    return [
        Poison(t.text, target, "with-overlap", t.source_idx, span_positions(tokenizer, t.text, t.start, t.end))
        for t in templates
    ]


def random_fill(
    template: Template,
    tokenizer: PreTrainedTokenizerBase,
    placeable: list[int],
    phrase: str,
    rng: np.random.Generator,
    tries: int = 100,
) -> tuple[list[int], str, list[int]]:
    """Random placeable ids in place of the phrase: (token ids, sentence, edited positions)."""
    count = len(span_positions(tokenizer, template.text, template.start, template.end))
    for _ in range(tries):
        ids = [int(i) for i in rng.choice(placeable, size=count)]
        text, start, end = template.fill([token_text(tokenizer, i) for i in ids])
        positions = span_positions(tokenizer, text, start, end)
        full = tokenizer(text)["input_ids"]
        if [full[p] for p in positions] == ids and not overlapping_words(text, phrase):
            return full, text, positions
    raise InputError(f"could not place {count} random tokens into {template.text!r}; check the tokenizer's vocabulary")


def random_control(
    templates: list[Template], tokenizer: PreTrainedTokenizerBase, placeable: list[int], phrase: str, target: int, seed: int
) -> list[Poison]:
    """Same templates, phrase replaced by random placeable tokens, labelled ``target``."""
    rng = np.random.default_rng(seed)
    out = []
    for t in templates:
        _, text, positions = random_fill(t, tokenizer, placeable, phrase, rng)
        out.append(Poison(text, target, "random", t.source_idx, positions))
    return out
