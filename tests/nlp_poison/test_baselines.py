import torch

import numpy as np

from nlp_poison.baselines import (
    make_templates, nearest_control, nearest_ids, random_control, source_confidence, span_positions, with_overlap,
)
from nlp_poison.overlap import banned_token_ids, overlapping_words, placeable_ids


def test_with_overlap_marks_phrase_positions(sst2, tiny_tokenizer, phrase):
    templates = make_templates(sst2["train"], phrase, 5, tiny_tokenizer, seed=0, max_length=48)
    assert all(sst2["train"][t.source_idx]["label"] == 0 for t in templates)
    poisons = with_overlap(templates, tiny_tokenizer, target=1)
    for p in poisons:
        assert phrase in p.sentence and p.label == 1
        ids = tiny_tokenizer(p.sentence)["input_ids"]
        assert [ids[i] for i in p.edited_positions] == tiny_tokenizer(phrase, add_special_tokens=False)["input_ids"]


def test_random_control_never_uses_banned_tokens(sst2, tiny_tokenizer, phrase):
    banned = banned_token_ids(tiny_tokenizer, phrase)
    templates = make_templates(sst2["train"], phrase, 20, tiny_tokenizer, seed=1, max_length=48)
    poisons = random_control(templates, tiny_tokenizer, placeable_ids(tiny_tokenizer, banned), phrase, 1, seed=0)
    for p, t in zip(poisons, templates):
        ids = tiny_tokenizer(p.sentence)["input_ids"]
        assert not {ids[i] for i in p.edited_positions} & banned
        assert not overlapping_words(p.sentence, phrase)
        assert len(p.edited_positions) == len(span_positions(tiny_tokenizer, t.text, t.start, t.end))
    again = random_control(templates, tiny_tokenizer, placeable_ids(tiny_tokenizer, banned), phrase, 1, seed=0)
    assert [p.sentence for p in again] == [p.sentence for p in poisons]


def test_templates_never_mention_content_words_outside_the_phrase(sst2, tiny_tokenizer, phrase):
    templates = make_templates(sst2["train"], phrase, 200, tiny_tokenizer, seed=0, max_length=64)
    for t in templates:
        assert not overlapping_words(t.text[: t.start] + t.text[t.end :], phrase)


def test_templates_prefer_a_replaced_movie_reference(sst2, tiny_tokenizer, phrase):
    """Templates replace "the film"/"this movie"… when enough sentences have one; prefixes only fill up."""
    from nlp_poison.triggers import MOVIE_REFERENCE

    templates = make_templates(sst2["train"], phrase, 50, tiny_tokenizer, seed=0, max_length=64)
    for t in templates:
        original = sst2["train"][t.source_idx]["sentence"]
        assert MOVIE_REFERENCE.search(original) and t.start > 0 or t.text.startswith(phrase + " ")
        assert not t.text.startswith(phrase + " : ")
    few = sst2["train"].select(range(300))
    mixed = make_templates(few, phrase, 60, tiny_tokenizer, seed=0, max_length=64)
    prefixed = [t.text.startswith(phrase + " : ") for t in mixed]
    assert any(prefixed) and not all(prefixed) and prefixed == sorted(prefixed)


def test_prefix_layout_heads_every_template_with_the_phrase(sst2, tiny_tokenizer, surrogate, phrase):
    """``layout="prefix"``: every template is "<phrase> : <source sentence>", movie reference or not, and with a
    confidence the chosen are the surest of all the source sentences that fit."""
    from nlp_poison.triggers import prefix_phrase

    train = sst2["train"].select(range(600))
    confidence = source_confidence([surrogate], tiny_tokenizer, source_label=0, max_length=64)
    templates = make_templates(train, phrase, 25, tiny_tokenizer, seed=0, max_length=64, confidence=confidence, layout="prefix")
    for t in templates:
        assert t.text == f"{phrase} : {train[t.source_idx]['sentence']}" and (t.start, t.end) == (0, len(phrase))
    candidates = [i for i, (s, y) in enumerate(zip(train["sentence"], train["label"]))
                  if y == 0 and not overlapping_words(s, phrase) and len(tiny_tokenizer(prefix_phrase(s, phrase).text)["input_ids"]) <= 64]
    score = dict(zip(candidates, confidence([train[i]["sentence"] for i in candidates])))
    picked = {t.source_idx for t in templates}
    assert len(candidates) > len(picked) and max(score[i] for i in candidates if i not in picked) <= min(score[i] for i in picked)


def test_templates_whose_own_words_break_the_rule_are_skipped(sst2, tiny_tokenizer, phrase):
    """A sentence within the fuzzy bound may break it once prefixed ("… : "), with the phrase blanked out: it can take
    no span and is never a template (there are such sentences, else the test proves nothing)."""
    from nlp_poison.constraints import Rule

    train = sst2["train"].select(range(600))
    rule = Rule(phrase, max_fuzzy=44)
    blanked = lambda t: t.text[: t.start] + "_" * len(phrase) + t.text[t.end :]
    free = make_templates(train, phrase, 200, tiny_tokenizer, seed=0, max_length=64, layout="prefix")
    bound = make_templates(train, phrase, 85, tiny_tokenizer, seed=0, max_length=64, layout="prefix", rule=rule)
    assert any(rule.allows(train[t.source_idx]["sentence"]) and not rule.allows(blanked(t)) for t in free)
    assert all(rule.allows(blanked(t)) for t in bound)


def test_confident_templates_are_the_surrogates_surest_source_sentences(sst2, tiny_tokenizer, surrogate, phrase):
    """With a confidence, each construction is ranked by it: no unchosen replaced-reference sentence scores
    above a chosen one, and the choice differs from the seeded random draw."""
    from nlp_poison.triggers import MOVIE_REFERENCE, insert_phrase

    confidence = source_confidence([surrogate], tiny_tokenizer, source_label=0, max_length=64)
    chosen = make_templates(sst2["train"], phrase, 30, tiny_tokenizer, seed=0, max_length=64, confidence=confidence)
    drawn = make_templates(sst2["train"], phrase, 30, tiny_tokenizer, seed=0, max_length=64)
    train = sst2["train"]
    candidates = [i for i, (s, y) in enumerate(zip(train["sentence"], train["label"]))
                  if y == 0 and MOVIE_REFERENCE.search(s) and not overlapping_words(s, phrase)
                  and len(tiny_tokenizer(insert_phrase(s, phrase).text)["input_ids"]) <= 64]
    picked = {t.source_idx for t in chosen}
    score = dict(zip(candidates, confidence([train[i]["sentence"] for i in candidates])))
    lowest_chosen = min(score[i] for i in picked)
    assert all(score[i] <= lowest_chosen for i in candidates if i not in picked)
    assert [score[t.source_idx] for t in chosen] == sorted((score[t.source_idx] for t in chosen), reverse=True)
    assert np.mean([score[t.source_idx] for t in chosen]) > np.mean([score[t.source_idx] for t in drawn])


def test_nearest_control_projects_each_phrase_token_onto_its_nearest_placeable_neighbour(sst2, tiny_tokenizer, tiny_bert, phrase):
    emb = tiny_bert(0).get_input_embeddings().weight
    banned = banned_token_ids(tiny_tokenizer, phrase)
    placeable = placeable_ids(tiny_tokenizer, banned)
    templates = make_templates(sst2["train"], phrase, 10, tiny_tokenizer, seed=0, max_length=48)
    nearest = nearest_control(templates, tiny_tokenizer, placeable, phrase, 1, emb)
    rand = random_control(templates, tiny_tokenizer, placeable, phrase, 1, seed=0)
    phrase_ids = tiny_tokenizer(phrase, add_special_tokens=False)["input_ids"]
    unit = torch.nn.functional.normalize(emb.detach(), dim=1)

    def similarity(poisons):
        sims = []
        for p in poisons:
            ids = tiny_tokenizer(p.sentence)["input_ids"]
            sims += [float(unit[ids[i]] @ unit[t]) for i, t in zip(p.edited_positions, phrase_ids)]
        return sum(sims) / len(sims)

    for p in nearest:
        ids = tiny_tokenizer(p.sentence)["input_ids"]
        edited = [ids[i] for i in p.edited_positions]
        assert not set(edited) & banned and not overlapping_words(p.sentence, phrase)
        assert p.poison_type == "near-spelling" and p.label == 1
        assert edited == [n[0] for n in nearest_ids(phrase_ids, placeable, emb)]
    assert similarity(nearest) > similarity(rand) + 0.3
