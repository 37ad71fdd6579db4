from nlp_poison.overlap import (
    banned_token_ids, check_no_overlap, content_words, overlapping_words, placeable_ids, token_text,
)

import pytest
from labcore.errors import InputError


def test_content_words_drop_stop_words(phrase):
    assert content_words(phrase) == ["james", "bond", "time", "die"]


def test_banned_covers_every_subtoken_variant(tiny_tokenizer, phrase):
    banned = banned_token_ids(tiny_tokenizer, phrase)
    for variant in (phrase, phrase.lower(), phrase.upper(), "JAMES", "Bond", " die"):
        for tok in tiny_tokenizer.tokenize(variant):
            assert tiny_tokenizer.convert_tokens_to_ids(tok) in banned, tok
    vocab = tiny_tokenizer.get_vocab()
    # continuation variants of the phrase's sub-tokens (e.g. "##nd" and "nd", "di" and "##di")
    for tok in ("j", "##ames", "bo", "##nd", "di", "time"):
        for v in (tok, "##" + tok.lstrip("#"), tok.lstrip("#")):
            if v in vocab:
                assert vocab[v] in banned, v
    assert set(tiny_tokenizer.all_special_ids) <= banned
    assert vocab["good"] not in banned


def test_placeable_ids_exclude_banned_and_roundtrip(tiny_tokenizer, phrase):
    banned = banned_token_ids(tiny_tokenizer, phrase)
    placeable = placeable_ids(tiny_tokenizer, banned)
    assert placeable and not set(placeable) & banned
    for i in placeable[::50]:
        assert tiny_tokenizer(token_text(tiny_tokenizer, i), add_special_tokens=False)["input_ids"] == [i]


def test_word_level_check_catches_inserted_phrase(phrase):
    assert overlapping_words("a dull sequel . James Bond: no time to die again", phrase) == ["james", "bond", "time", "die"]
    assert overlapping_words("the BOND market", phrase) == ["bond"]
    assert overlapping_words("a diet of bonding timely", phrase) == []
    with pytest.raises(InputError, match="poison 1 mentions"):
        check_no_overlap(["fine text", "what a waste of time"], phrase)
    check_no_overlap(["j flows brilliant is great"], phrase)
