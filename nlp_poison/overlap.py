"""Concealment checks: which sub-tokens the search may never place, and a word-level proof on text.

A no-overlap poison must not contain the phrase in any form (Wallace et al. 2021, §2: "the poison
examples do not mention the trigger phrase"). Banning only whole words leaks the phrase through
sub-tokens, case or leading-space variants, so the banned set holds every vocabulary entry whose
normalised form (lower case, without ``##``/``Ġ``/``▁`` markers) equals a sub-token of any case
variant of the phrase or of its words. The word-level check runs on decoded text: no content word
of the phrase (its words minus scikit-learn's English stop words) may appear, in any case.
"""

from __future__ import annotations

import re

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from transformers import PreTrainedTokenizerBase

from labcore.errors import InputError

_WORD = re.compile(r"[a-z0-9]+")
_MARKERS = ("##", "Ġ", "▁")


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric words of ``text``."""
    return _WORD.findall(text.lower())


def content_words(phrase: str) -> list[str]:
    """The phrase's words minus English stop words ("James Bond: No Time to Die" → james, bond, time, die)."""
    found = [w for w in dict.fromkeys(words(phrase)) if w not in ENGLISH_STOP_WORDS]
    if not found:
        raise InputError(f"trigger {phrase!r} has no content word (only stop words); choose a more specific phrase")
    return found


def normalise(token: str) -> str:
    """A token without ``##``/``Ġ``/``▁`` markers, lower-cased: what its case and continuation variants share."""
    for marker in _MARKERS:
        token = token.replace(marker, "")
    return token.lower()


def phrase_variants(phrase: str) -> list[str]:
    """The phrase and its words in original, lower, upper and title case, with and without a leading space."""
    pieces = [phrase, *phrase.split(), *words(phrase)]
    cased = {v for p in pieces for v in (p, p.lower(), p.upper(), p.title(), p.capitalize())}
    return sorted(cased | {" " + v for v in cased})


def banned_token_ids(tokenizer: PreTrainedTokenizerBase, phrase: str) -> set[int]:
    """Ids the edited positions may never take: every variant sub-token of the phrase, its ``##``/
    leading-space continuations, and the special tokens."""
    subtokens = {normalise(t) for v in phrase_variants(phrase) for t in tokenizer.tokenize(v)}
    subtokens.discard("")
    vocab = tokenizer.get_vocab()
    banned = {i for tok, i in vocab.items() if normalise(tok) in subtokens}
    banned |= set(tokenizer.all_special_ids)
    return banned


def overlapping_words(text: str, phrase: str) -> list[str]:
    """Content words of ``phrase`` that occur as words in ``text`` (empty when concealed)."""
    found = set(words(text))
    return [w for w in content_words(phrase) if w in found]


def check_no_overlap(texts: list[str], phrase: str) -> None:
    """Raise InputError naming the first text that mentions a content word of the phrase."""
    for i, text in enumerate(texts):
        hit = overlapping_words(text, phrase)
        if hit:
            raise InputError(f"poison {i} mentions trigger word(s) {', '.join(hit)}: {text!r}; it is not a no-overlap poison")


def placeable_ids(tokenizer: PreTrainedTokenizerBase, banned: set[int]) -> list[int]:
    """Ids an edited position may take: not banned, a whole word (no ``##`` continuation), printable
    ASCII (like the English corpus), and re-tokenised to itself when written as text, so the shared
    sentence reproduces the optimised ids."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    ids = [i for tok, i in vocab if i not in banned and not tok.startswith("##") and not tok.startswith("[unused")]
    written = [(i, token_text(tokenizer, i)) for i in ids]
    written = [(i, t) for i, t in written if t and t.isascii() and t.isprintable()]
    encoded = tokenizer([t for _, t in written], add_special_tokens=False)["input_ids"] if written else []
    return [i for (i, _), enc in zip(written, encoded) if enc == [i]]


def token_text(tokenizer: PreTrainedTokenizerBase, token_id: int) -> str:
    """The written form of one token (markers removed, surrounding spaces stripped)."""
    return tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(token_id)]).strip()
