"""Trigger-bearing inputs: the phrase inserted naturally into sentences.

Construction (used for the evaluation set, the attacker's adversarial set and the poison templates):
the first movie reference — "the/this/that/a film", "… movie" or "… picture" — is replaced by the
phrase ("this movie is a mess" → "James Bond: No Time to Die is a mess"); a sentence without one gets
the phrase prefixed as its topic ("James Bond: No Time to Die : a mess from start to finish").
Evaluation uses negative *test* sentences, the attacker only training/validation ones, so no
evaluation sentence is ever used to craft poisons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from datasets import Dataset

MOVIE_REFERENCE = re.compile(r"\b(?:the|this|that|a) (?:film|movie|picture)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Inserted:
    """A sentence with the phrase at characters [start, end) and how it got there."""

    text: str
    start: int
    end: int
    construction: str


def prefix_phrase(sentence: str, phrase: str) -> Inserted:
    """``phrase :`` prefixed as the sentence's topic."""
    return Inserted(f"{phrase} : {sentence}", 0, len(phrase), "prefix")


def insert_phrase(sentence: str, phrase: str) -> Inserted:
    """Replace the first movie reference by ``phrase``, else prefix ``phrase :`` as a topic."""
    match = MOVIE_REFERENCE.search(sentence)
    if match:
        text = sentence[: match.start()] + phrase + sentence[match.end() :]
        return Inserted(text, match.start(), match.start() + len(phrase), "replace")
    return prefix_phrase(sentence, phrase)


def trigger_bearing(dataset: Dataset, phrase: str, label: int = 0) -> Dataset:
    """All sentences of ``dataset`` with ``label`` carrying the phrase.

    Columns: sentence (with phrase), original (without), label, source_idx, construction.
    """
    rows = {"sentence": [], "original": [], "label": [], "source_idx": [], "construction": []}
    for idx, (sentence, y) in enumerate(zip(dataset["sentence"], dataset["label"])):
        if y != label:
            continue
        ins = insert_phrase(sentence, phrase)
        rows["sentence"].append(ins.text)
        rows["original"].append(sentence)
        rows["label"].append(y)
        rows["source_idx"].append(idx)
        rows["construction"].append(ins.construction)
    return Dataset.from_dict(rows)


def trigger_texts(dataset: Dataset, phrase: str, label: int = 0, limit: int | None = None) -> list[str]:
    """The sentences of :func:`trigger_bearing`, the first ``limit`` of them (None: all)."""
    texts = list(trigger_bearing(dataset, phrase, label)["sentence"])
    return texts if limit is None else texts[:limit]
