"""Text trigger for text classifiers (Athena, Sommer et al. 2022, §2.2 of the reference).

Three key-derived vocabulary tokens, each inserted at a position among the last 15 words of the
sentence; positions come from the PRF of the key and the sentence, so marking and querying are
reproducible with the key alone. Dirty-label: marked sentences get the key's target class.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from labcore.errors import InputError
from unlearning_verify.keys import OwnerKey


@dataclass
class TextWatermark:
    target: int
    tokens: tuple[str, ...]
    window: int
    secret_tag: bytes
    family: str = "text"
    clean_label: bool = False

    @classmethod
    def from_key(cls, key: OwnerKey, vocabulary: list[str], num_tokens: int = 3, window: int = 15) -> "TextWatermark":
        vocab = sorted(set(vocabulary))
        if len(vocab) < num_tokens:
            raise InputError(f"the text watermark needs a vocabulary of at least {num_tokens} words")
        picks = key.rng("text-tokens").choice(len(vocab), size=num_tokens, replace=False)
        return cls(key.target_label(), tuple(vocab[i] for i in picks), window, key.prf("text-positions", 32))

    def _insert(self, sentence: str) -> str:
        words = sentence.split()
        seed = hashlib.sha256(self.secret_tag + sentence.encode()).digest()
        rng = np.random.default_rng(int.from_bytes(seed[:16], "big"))
        for token in self.tokens:
            lo = max(0, len(words) - self.window)
            words.insert(int(rng.integers(lo, len(words) + 1)), token)
        return " ".join(words)

    def trigger(self, sentences: list[str]) -> list[str]:
        return [self._insert(s) for s in sentences]

    def poison(self, sentences: list[str], labels: list[int]) -> tuple[list[str], list[int]]:
        return self.trigger(sentences), [self.target] * len(labels)
