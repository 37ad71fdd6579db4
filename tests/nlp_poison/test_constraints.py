"""Concealment constraints: every token the search or a control writes lies outside the phrase's k nearest
input-embedding neighbours (with its ``##`` and case variants), every sentence within the fuzzy bound."""

import pytest
import torch
from rapidfuzz import fuzz

from labcore.errors import InputError
from nlp_poison.baselines import make_templates, nearest_control, random_control
from nlp_poison.concealed import ConcealedConfig, craft
from nlp_poison.contextual import contextual_control
from nlp_poison.constraints import NeighbourIndex, Rule, anchor_words, constrain, fuzzy_ratio
from nlp_poison.overlap import banned_token_ids, normalise, placeable_ids
from nlp_poison.triggers import trigger_bearing

K, BOUND = 40, 60.0


def within_k(tokenizer, emb: torch.Tensor, phrase: str, token_id: int, k: int) -> bool:
    """Brute force: is ``token_id`` — or any vocabulary entry of the same form (``##`` piece, case variant) —
    among the k most cosine-similar ranked tokens of a sub-token of an anchor word of the phrase?"""
    vocab = tokenizer.convert_ids_to_tokens(list(range(emb.shape[0])))
    anchors = {tokenizer.convert_tokens_to_ids(t) for w in anchor_words(phrase) for t in tokenizer.tokenize(w)}
    anchor_forms = {normalise(vocab[a]) for a in anchors}
    banned = banned_token_ids(tokenizer, phrase)
    pool = [i for i, t in enumerate(vocab) if i not in banned and normalise(t) not in anchor_forms]
    unit = torch.nn.functional.normalize(emb.float(), dim=1)
    variants = [i for i, t in enumerate(vocab) if normalise(t) == normalise(vocab[token_id])]
    for a in anchors:
        top = set(torch.tensor(pool)[(unit[pool] @ unit[a]).topk(k).indices].tolist())
        if top & set(variants) or normalise(vocab[token_id]) in anchor_forms:
            return True
    return False


@pytest.fixture(scope="module")
def setup(sst2, tiny_tokenizer, surrogate, phrase):
    emb = surrogate.get_input_embeddings().weight.detach()
    rule, excluded = constrain(NeighbourIndex(tiny_tokenizer, emb, phrase), phrase, K, BOUND)
    templates = make_templates(sst2["train"], phrase, 6, tiny_tokenizer, seed=0, max_length=48, exclude=set(range(2000, 2032)), rule=rule,
                               avoid=excluded)
    placeable = placeable_ids(tiny_tokenizer, banned_token_ids(tiny_tokenizer, phrase))
    return emb, rule, excluded, templates, placeable


def _edited(tokenizer, poisons) -> list[int]:
    return [tokenizer(p.sentence)["input_ids"][i] for p in poisons for i in p.edited_positions]


def _assert_concealed(tokenizer, emb, phrase, poisons, k=K, bound=BOUND):
    edited = _edited(tokenizer, poisons)
    assert edited
    assert not [tokenizer.convert_ids_to_tokens(i) for i in edited if within_k(tokenizer, emb, phrase, i, k)]
    assert all(len(p.sentence) >= len(phrase) for p in poisons)
    assert max(fuzz.partial_ratio(phrase.lower(), p.sentence.lower()) for p in poisons) <= bound


@pytest.mark.parametrize("kw", [{}, {"shared": False, "neighbours": None, "init": "random"}])
def test_search_writes_no_token_within_the_k_nearest_neighbours(surrogate, tiny_tokenizer, phrase, sst2, setup, kw):
    emb, _, _, templates, placeable = setup
    adv = trigger_bearing(sst2["validation"], phrase).select(range(16))
    clean = sst2["train"].select(range(2000, 2032))
    cfg = ConcealedConfig(iterations=4, top_k=6, clean_batch=32, unroll_lr=1.0, collision=0.0, exclude_neighbours=K, max_fuzzy=BOUND, **kw)
    result = craft(surrogate, tiny_tokenizer, templates, phrase, placeable, list(adv["sentence"]), list(adv["original"]),
                   list(clean["sentence"]), list(clean["label"]), cfg, progress=False)
    _assert_concealed(tiny_tokenizer, emb, phrase, result.poisons)
    assert result.trace[-1] <= result.trace[0]


def test_controls_obey_the_constraints_and_the_unconstrained_baseline_does_not(tiny_tokenizer, phrase, setup):
    emb, rule, excluded, templates, placeable = setup
    allowed = [i for i in placeable if i not in excluded]
    _assert_concealed(tiny_tokenizer, emb, phrase, nearest_control(templates, tiny_tokenizer, allowed, phrase, 1, emb, rule))
    _assert_concealed(tiny_tokenizer, emb, phrase, random_control(templates, tiny_tokenizer, allowed, phrase, 1, 0, rule))
    near = nearest_control(templates, tiny_tokenizer, placeable, phrase, 1, emb)
    assert any(within_k(tiny_tokenizer, emb, phrase, i, K) for i in _edited(tiny_tokenizer, near))


@pytest.mark.parametrize("contexts", [0, 2], ids=["alone", "in-context"])
def test_contextual_proxy_obeys_the_constraints_in_every_poison(surrogate, tiny_tokenizer, phrase, setup, contexts):
    emb, rule, excluded, templates, placeable = setup
    allowed = [i for i in placeable if i not in excluded]
    poisons, trace = contextual_control(templates, tiny_tokenizer, allowed, phrase, 1, surrogate, rule, top_k=16, passes=2, seed=0,
                                        contexts=contexts)
    _assert_concealed(tiny_tokenizer, emb, phrase, poisons)
    spans = {tuple(tiny_tokenizer(p.sentence)["input_ids"][i] for i in p.edited_positions) for p in poisons}
    assert len(spans) == 1 and len(poisons) == len(templates), "one shared span, written into every template"
    assert trace[-1] <= trace[0] and {p.poison_type for p in poisons} == {"contextual"}


def test_several_contextual_spans_are_written_round_robin_under_the_constraints(surrogate, tiny_tokenizer, phrase, setup):
    emb, rule, excluded, templates, placeable = setup
    allowed = [i for i in placeable if i not in excluded]
    poisons, _ = contextual_control(templates, tiny_tokenizer, allowed, phrase, 1, surrogate, rule, top_k=16, passes=2, seed=0, spans=2)
    _assert_concealed(tiny_tokenizer, emb, phrase, poisons)
    spans = [tuple(tiny_tokenizer(p.sentence)["input_ids"][i] for i in p.edited_positions) for p in poisons]
    assert len(set(spans)) == 2 and all(s == spans[i % 2] for i, s in enumerate(spans)), "span i mod 2 in template i"


def test_excluded_set_holds_every_variant_of_a_neighbour(tiny_tokenizer, phrase, setup):
    emb, _, excluded, _, _ = setup
    vocab = tiny_tokenizer.get_vocab()
    forms = {normalise(t) for t, i in vocab.items() if i in excluded}
    assert all(i in excluded for t, i in vocab.items() if normalise(t) in forms)
    assert any(t.startswith("##") for t, i in vocab.items() if i in excluded)
    brute = {i for i in range(emb.shape[0]) if within_k(tiny_tokenizer, emb, phrase, i, K)}
    assert brute <= excluded


def test_rule_rejects_fuzzy_matches_and_excluded_words(phrase):
    rule = Rule(phrase, 5, 60.0, frozenset({"bonds"}))
    assert rule.allows("a stagger to extent lacks focus")
    assert "fuzzy ratio" in rule.violation("jame bon : no tim to di is a mess")
    assert "bonds" in rule.violation("the Bonds of fate lack focus")
    with pytest.raises(InputError, match="poison 2 breaks the declared constraints .word.s. bonds"):
        rule.check(["fine", "a lame gun is a mess", "jim bonds lacks focus"], "set")
    assert fuzzy_ratio("fine", phrase) < 30 and fuzzy_ratio("Jame Bon: No Time to Di", phrase) > 80


def test_a_phrase_word_that_is_a_stop_word_still_anchors():
    assert anchor_words("Top Gun: Maverick") == ["top", "gun", "maverick"]
    assert anchor_words("James Bond: No Time to Die") == ["james", "bond", "time", "die"]


def test_templates_hold_no_excluded_token_anywhere(tiny_tokenizer, setup):
    _, _, excluded, templates, _ = setup
    for t in templates:
        kept = t.text[: t.start] + t.text[t.end :]
        assert not excluded.intersection(tiny_tokenizer(kept)["input_ids"])
