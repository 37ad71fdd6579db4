"""Concealment constraints a user sets on no-overlap poisons, and the measures they bound.

Wallace et al. (NAACL 2021, §1) conceal poisons from a curator who *searches for the phrase*. A
projection of the phrase onto its nearest tokens ("james bond" → "jonathan bonds") shares no word
with it but is found by any fuzzy string search or embedding-neighbour search for it. Two measures
catch that, and each becomes a constraint:

- **character similarity**: the best fuzzy-match ratio (0–100) of the phrase against any span of the
  sentence (``rapidfuzz.fuzz.partial_ratio``, lower-cased, spans as long as the phrase); constraint
  ``ratio ≤ max_fuzzy``;
- **embedding similarity**: for each *anchor* (a sub-token of a word of the phrase, in any
  case or leading-space variant), the rank of a token among the vocabulary's neighbours of that
  anchor by cosine similarity of the model's input embeddings (1 = nearest; 0 = a variant of the
  anchor itself); constraint: no edited token within the ``exclude_neighbours`` nearest of any anchor.

The excluded token set holds every vocabulary entry whose normalised form (lower case, ``##``/``Ġ``/``▁``
removed) equals that of one of the k nearest neighbours, so ``##`` pieces and case or leading-space
variants of a neighbour are excluded with it. The search checks tokens at every candidate; a poison
set's card declares the constraints and the *words* of the excluded whole-word neighbours, so loading
re-checks every sentence without the model (``Rule.check``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from rapidfuzz import fuzz
from transformers import PreTrainedTokenizerBase

from labcore.errors import InputError
from nlp_poison.overlap import banned_token_ids, content_words, normalise, words

NO_FUZZY_BOUND = 100.0
"""``max_fuzzy`` that bounds nothing (a ratio is at most 100)."""


def fuzzy_ratio(text: str, phrase: str) -> float:
    """Best fuzzy-match ratio (0–100) of ``phrase`` against any span of ``text``, case-insensitive. A text
    shorter than the phrase is its own only span (``partial_ratio`` would instead align the text inside
    the phrase, so that "fine" scored 67 against "… No Time to Die")."""
    text, phrase = text.lower(), phrase.lower()
    return float(fuzz.partial_ratio(phrase, text) if len(text) >= len(phrase) else fuzz.ratio(phrase, text))


FUNCTION_WORDS = frozenset({"the", "and", "for", "with", "from", "into", "onto", "that", "this", "but", "not", "nor", "are", "was"})
"""Words of a phrase that are no anchor: their neighbours are in every sentence."""


def anchor_words(phrase: str) -> list[str]:
    """The phrase's words of three or more characters that are not function words ("Top Gun: Maverick" → top,
    gun, maverick: unlike the overlap check's content words, "top" counts, so "tops" is caught); the content
    words when no word qualifies."""
    found = [w for w in dict.fromkeys(words(phrase)) if len(w) >= 3 and w not in FUNCTION_WORDS]
    return found or content_words(phrase)


def anchor_ids(tokenizer: PreTrainedTokenizerBase, phrase: str) -> list[int]:
    """Ids of the sub-tokens of the phrase's anchor words, in lower/title/upper case, with and without a
    leading space (short function words and punctuation are no anchor: their neighbours are everywhere)."""
    variants = [v for w in anchor_words(phrase) for c in (w, w.title(), w.upper()) for v in (c, " " + c)]
    ids = {tokenizer.convert_tokens_to_ids(t) for v in variants for t in tokenizer.tokenize(v)}
    return sorted(ids - set(tokenizer.all_special_ids) - {tokenizer.unk_token_id})


class NeighbourIndex:
    """Rank of every vocabulary token among each anchor's neighbours in input-embedding space.

    ``ranks[a, v]``: 0 when ``v`` is a variant of a sub-token of the phrase (normalised form equal to an
    anchor's), else 1 + the number of ranked tokens more cosine-similar to anchor ``a``. Special tokens and
    the phrase's stop-word sub-tokens are not ranked (rank = vocabulary size).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, embeddings: torch.Tensor, phrase: str) -> None:
        vocab = tokenizer.convert_ids_to_tokens(list(range(embeddings.shape[0])))
        self.forms = [normalise(t or "") for t in vocab]
        self.whole = [not (t or "").startswith("##") for t in vocab]
        self.anchors = anchor_ids(tokenizer, phrase)
        if not self.anchors:
            raise InputError(f"no sub-token of {phrase!r} is in the tokenizer's vocabulary; choose another phrase")
        anchor_forms = {self.forms[a] for a in self.anchors}
        itself = torch.tensor([f in anchor_forms for f in self.forms])
        unranked = torch.zeros(len(vocab), dtype=torch.bool)
        unranked[sorted(banned_token_ids(tokenizer, phrase))] = True
        unranked |= torch.tensor([t is None or t.startswith("[unused") for t in vocab])
        unranked &= ~itself
        unit = torch.nn.functional.normalize(embeddings.detach().float(), dim=1)
        sims = unit[self.anchors] @ unit.T
        sims[:, itself | unranked] = -torch.inf
        order = sims.argsort(dim=1, descending=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(1, len(vocab) + 1).expand_as(order).contiguous())
        ranks[:, itself] = 0
        ranks[:, unranked] = len(vocab)
        self.ranks = ranks
        self.labels = tokenizer.convert_ids_to_tokens(self.anchors)

    def best_rank(self, ids: list[int]) -> torch.Tensor:
        """Per anchor, the smallest rank among ``ids`` (vocabulary size for no ids)."""
        if not ids:
            return torch.full((len(self.anchors),), self.ranks.shape[1])
        return self.ranks[:, ids].min(dim=1).values

    def excluded_ids(self, k: int) -> set[int]:
        """Tokens within the ``k`` nearest of any anchor (and the anchors' own variants), with every vocabulary
        entry of the same normalised form (``##`` pieces, case and leading-space variants)."""
        near = torch.nonzero((self.ranks <= k).any(dim=0)).flatten().tolist() if k > 0 else []
        forms = {self.forms[i] for i in near}
        return {i for i, f in enumerate(self.forms) if f in forms}

    def excluded_words(self, k: int) -> list[str]:
        """The written forms of the whole-word tokens among the ``k`` nearest (what a reader sees as words)."""
        if k <= 0:
            return []
        near = torch.nonzero((self.ranks <= k).any(dim=0)).flatten().tolist()
        return sorted({w for i in near if self.whole[i] for w in words(self.forms[i])})


@dataclass(frozen=True)
class Rule:
    """The constraints one poison set declares: fuzzy ratio ≤ ``max_fuzzy``; no word of ``excluded_words``
    (the whole-word tokens within the ``exclude_neighbours`` nearest of the phrase's anchors, on
    ``embedding_model``'s input embeddings). ``Rule(phrase)`` constrains nothing."""

    phrase: str
    exclude_neighbours: int = 0
    max_fuzzy: float = NO_FUZZY_BOUND
    excluded_words: frozenset[str] = field(default_factory=frozenset)
    embedding_model: str | None = None

    def violation(self, text: str) -> str | None:
        """Why ``text`` breaks the rule, or None."""
        if self.max_fuzzy < NO_FUZZY_BOUND and (ratio := fuzzy_ratio(text, self.phrase)) > self.max_fuzzy:
            return f"fuzzy ratio {ratio:.1f} to {self.phrase!r} exceeds {self.max_fuzzy:g}"
        near = sorted(self.excluded_words.intersection(words(text)))
        if near:
            return f"word(s) {', '.join(near)} within the phrase's {self.exclude_neighbours} nearest embedding neighbours"
        return None

    def allows(self, text: str) -> bool:
        return self.violation(text) is None

    def check(self, texts: list[str], where: str) -> None:
        """InputError naming the first sentence that breaks the rule."""
        for i, text in enumerate(texts):
            why = self.violation(text)
            if why:
                raise InputError(f"{where}: poison {i} breaks the declared constraints ({why}): {text!r}; regenerate the set or fix its card")

    def header(self) -> dict:
        """The dataset card's ``constraints`` mapping."""
        return {"exclude_neighbours": self.exclude_neighbours, "max_fuzzy": self.max_fuzzy, "embedding_model": self.embedding_model,
                "excluded_words": sorted(self.excluded_words)}

    @classmethod
    def from_header(cls, phrase: str, header: dict, where: str) -> "Rule":
        """The rule a card declares; a malformed ``constraints`` mapping is an InputError."""
        try:
            k, bound = int(header.get("exclude_neighbours", 0)), float(header.get("max_fuzzy", NO_FUZZY_BOUND))
            excluded = frozenset(str(w) for w in header.get("excluded_words") or [])
        except (TypeError, ValueError, AttributeError):
            raise InputError(f"{where}: the card's 'constraints' is malformed; restore the original card") from None
        return cls(phrase, k, bound, excluded, header.get("embedding_model"))


def constrain(index: NeighbourIndex | None, phrase: str, exclude_neighbours: int, max_fuzzy: float,
              embedding_model: str | None = None) -> tuple[Rule, set[int]]:
    """The rule a set generated under these constraints declares, and the token ids no edit may take
    (``index`` is needed only when ``exclude_neighbours`` > 0)."""
    if exclude_neighbours <= 0:
        return Rule(phrase, 0, max_fuzzy, frozenset(), None), set()
    if index is None:
        raise InputError("excluding embedding neighbours needs the model's input embeddings")
    rule = Rule(phrase, exclude_neighbours, max_fuzzy, frozenset(index.excluded_words(exclude_neighbours)), embedding_model)
    return rule, index.excluded_ids(exclude_neighbours)
